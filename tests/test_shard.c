/* test_shard — `blindspot evaluate --shard I/N` and `--merge`: the shards
 * of an evaluation merged give, byte for byte, the JSON document and the
 * text tables of the run without --shard (3 shards, 1 shard, more shards
 * than images); the merge refuses shards that are not the N shards of one
 * evaluation (another N, seed, slice, method, params, noise, magnify or
 * models; a shard missing or twice) and files that are not shard documents
 * (garbage, truncated, every field missing or of the wrong type), with
 * exit status 2 and a message, never a crash. Needs `make data models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A small evaluation: fast models, an L-BFGS with small limits. */
#define EVAL "--models fc10-1e-4,fc10-1,fc100-100-10 --first 7 --n 12 --seed 3 " \
             "--param max_iterations=20 --param search_steps=3 --noise 0.1,0.3"

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_tmpdir();
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* Runs `blindspot ARGS` (stderr into the output when with_stderr, else
 * dropped); returns the exit status, *out the output (caller frees). */
static int run(const char *args, int with_stderr, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %s", tu_bin("blindspot"), args,
             with_stderr ? "2>&1" : "2>/dev/null");
    char *text = NULL;
    int rc = tu_run(cmd, &text);
    if (out)
        *out = text ? text : strdup("");
    else
        free(text);
    return rc;
}

/* The output of a command that must succeed. */
static char *ok(const char *fmt, ...)
{
    char args[4096], *out;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = run(args, 0, &out);
    if (rc != 0)
        fail_msg("'blindspot %s' exited %d", args, rc);
    return out;
}

/* Writes shard index of count of evaluation `eval` to DIR/NAME. */
static void shard(const char *eval, int index, int count, const char *name)
{
    free(ok("evaluate %s --shard %d/%d -o %s/%s", eval, index, count, dir, name));
}

/* Shards 0..2 of 3 of EVAL as DIR/PREFIX0.json .. PREFIX2.json. */
static void three_shards(const char *prefix)
{
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s%d.json", prefix, i);
        shard(EVAL, i, 3, name);
    }
}

/* Appends " DIR/NAME" to list for each space-separated name of files. */
static void in_dir(const char *files, char *list, size_t size)
{
    char *save = NULL, *copy = strdup(files);
    for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        size_t used = strlen(list);
        snprintf(list + used, size - used, " %s/%s", dir, t);
    }
    free(copy);
}

/* The merge of the files (names in DIR, space-separated) must print what
 * the whole evaluation prints, as JSON and as text. */
static void assert_merge_is_whole(const char *eval, const char *files)
{
    char list[2048] = "";
    in_dir(files, list, sizeof list);
    char *whole = ok("evaluate %s --json", eval), *merged = ok("evaluate --merge --json%s", list);
    assert_string_equal(merged, whole);
    free(whole);
    free(merged);
    whole = ok("evaluate %s", eval);
    merged = ok("evaluate --merge%s", list);
    assert_string_equal(merged, whole);
    assert_non_null(strstr(merged, "Table 1"));
    free(whole);
    free(merged);
}

static void test_three_shards_merge_to_the_whole_run(void **state)
{
    (void)state;
    three_shards("s");
    /* in any order */
    assert_merge_is_whole(EVAL, "s2.json s0.json s1.json");
    /* the shard holds its images, 4 of 12, counted from the slice's start */
    size_t len;
    char path[512];
    snprintf(path, sizeof path, "%s/s1.json", dir);
    char *text = (char *)tu_read_file(path, &len);
    json_t *doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    json_t *sh = json_object_get(doc, "shard");
    assert_int_equal(json_integer_value(json_object_get(sh, "first")), 4);
    assert_int_equal(json_integer_value(json_object_get(sh, "n")), 4);
    assert_int_equal(json_array_size(json_object_get(doc, "images")), 4);
    assert_int_equal(json_integer_value(json_object_get(doc, "first")), 7);
    json_decref(doc);
    free(text);
}

/* The number of image records in the shard document that
 * `evaluate EVAL --shard SPEC` prints. */
static size_t images_on_stdout(const char *eval, const char *spec)
{
    char *out = ok("evaluate %s --shard %s", eval, spec);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    size_t n = json_array_size(json_object_get(doc, "images"));
    json_decref(doc);
    free(out);
    return n;
}

static void test_one_shard(void **state)
{
    (void)state;
    const char *eval = "--models fc10-1e-4,cnn --n 5 --seed 2 --method fgsm --magnify 0";
    shard(eval, 0, 1, "only.json");
    assert_merge_is_whole(eval, "only.json");
    /* without -o the document goes to stdout */
    assert_int_equal(images_on_stdout(eval, "0/1"), 5);
}

static void test_more_shards_than_images(void **state)
{
    (void)state;
    const char *eval = "--models fc10-1e-2,fc10-1 --first 100 --n 3 --seed 9 --method fgsm";
    char name[32];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "e%d.json", i);
        shard(eval, i, 5, name);
    }
    assert_merge_is_whole(eval, "e0.json e1.json e2.json e3.json e4.json");
    /* shard 0 of 5 of 3 images is empty */
    assert_int_equal(images_on_stdout(eval, "0/5"), 0);
}

/* The merge of files (in DIR) must exit 2 with a message holding want. */
static void assert_refused(const char *files, const char *want)
{
    char args[2048] = "evaluate --merge", *out;
    in_dir(files, args, sizeof args);
    int rc = run(args, 1, &out);
    if (rc != 2 || !strstr(out, want))
        fail_msg("'%s' exited %d (want 2) saying: %s(want '%s')", args, rc, out, want);
    free(out);
}

static void test_shards_that_do_not_fit_are_refused(void **state)
{
    (void)state;
    three_shards("r");
    assert_refused("r0.json r2.json", "shard 1/3 is missing");
    assert_refused("r0.json r1.json r0.json r2.json", "are both shard 0/3");
    shard(EVAL, 1, 2, "half.json");
    assert_refused("r0.json r1.json half.json", "not the same split");
    shard(EVAL " --seed 4", 1, 3, "seed.json");
    assert_refused("r0.json seed.json r2.json", "their seed differ");
    shard(EVAL " --first 8", 1, 3, "first.json");
    assert_refused("r0.json first.json r2.json", "their slice (first) differ");
    shard("--models fc10-1e-4,fc10-1,fc100-100-10 --first 7 --n 12 --seed 3 --noise 0.1,0.3 "
          "--method fgsm", 1, 3, "method.json");
    assert_refused("r0.json method.json r2.json", "their method differ");
    shard(EVAL " --param max_iterations=21", 1, 3, "params.json");
    assert_refused("r0.json params.json r2.json", "their params differ");
    shard(EVAL " --noise 0.1", 1, 3, "noise.json");
    assert_refused("r0.json noise.json r2.json", "their noise differ");
    shard(EVAL " --magnify 0.2", 1, 3, "magnify.json");
    assert_refused("r0.json magnify.json r2.json", "their magnify differ");
    shard(EVAL " --models fc10-1e-4,fc10-1e-2,fc100-100-10", 1, 3, "models.json");
    assert_refused("r0.json models.json r2.json", "their models differ");

    /* not shard documents */
    char path[512];
    snprintf(path, sizeof path, "%s/garbage.json", dir);
    assert_int_equal(tu_write_file(path, "\x7f" "ELF\x02\x01", 6), 0);
    assert_refused("r0.json garbage.json r2.json", "is not a shard document");
    snprintf(path, sizeof path, "%s/r1.json", dir);
    size_t len;
    char *text = (char *)tu_read_file(path, &len);
    snprintf(path, sizeof path, "%s/truncated.json", dir);
    assert_int_equal(tu_write_file(path, text, len / 2), 0);
    assert_refused("r0.json truncated.json r2.json", "is not a shard document");
    snprintf(path, sizeof path, "%s/empty.json", dir);
    assert_int_equal(tu_write_file(path, "", 0), 0);
    assert_refused("empty.json", "is not a shard document");
    snprintf(path, sizeof path, "%s/other.json", dir);
    assert_int_equal(tu_write_file(path, "{\"dataset\":\"mnist\"}", 19), 0);
    assert_refused("other.json", "is not a shard document");
    assert_refused("r0.json nosuch.json r2.json", "nosuch.json");
    free(text);
}

/* Writes doc as DIR/name. */
static void write_doc(const json_t *doc, const char *name)
{
    char path[512], *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
    free(text);
}

/* Every field of a shard document, and of an image's record, missing or
 * of the wrong type: refused with status 2, no crash. */
static void test_hostile_shard_documents_are_refused(void **state)
{
    (void)state;
    const char *eval = "--models fc10-1e-4,fc10-1 --n 2 --method fgsm --noise 0.2";
    shard(eval, 0, 1, "good.json");
    char path[512];
    snprintf(path, sizeof path, "%s/good.json", dir);
    json_t *good = json_load_file(path, 0, NULL);
    assert_non_null(good);
    json_t *bad_values[] = {json_null(), json_string("x"), json_integer(-1), json_real(1e300),
                            json_array(), json_object()};
    const char *key;
    json_t *v;
    int cases = 0;
    json_object_foreach(good, key, v) {
        json_t *doc = json_deep_copy(good);
        json_object_del(doc, key);
        write_doc(doc, "bad.json");
        json_decref(doc);
        assert_refused("bad.json", "bad.json");
        for (size_t b = 0; b < sizeof bad_values / sizeof bad_values[0]; b++) {
            /* any string names a dataset or split */
            if (json_is_string(bad_values[b]) && json_is_string(v) && strcmp(key, "method") &&
                strcmp(key, "status") && strcmp(key, "format"))
                continue;
            doc = json_deep_copy(good);
            json_object_set(doc, key, bad_values[b]);
            write_doc(doc, "bad.json");
            json_decref(doc);
            assert_refused("bad.json", "bad.json");
            cases++;
        }
    }
    /* inside an image's record */
    json_t *image = json_array_get(json_object_get(good, "images"), 1);
    json_t *attack = json_array_get(json_object_get(image, "attacks"), 0);
    json_t *noise = json_array_get(json_object_get(image, "noise"), 0);
    json_t *parts[] = {image, attack, noise};
    for (size_t p = 0; p < 3; p++)
        json_object_foreach(parts[p], key, v) {
            for (size_t b = 0; b < sizeof bad_values / sizeof bad_values[0]; b++) {
                if (!strcmp(key, "ratio") && json_is_real(bad_values[b]))
                    continue; /* any finite ratio is one */
                json_t *saved = json_incref(v);
                json_object_set(parts[p], key, bad_values[b]);
                write_doc(good, "bad.json");
                json_object_set_new(parts[p], key, saved);
                assert_refused("bad.json", "out of shape");
                cases++;
            }
            json_t *flag = json_object_get(parts[p], key);
            if (json_is_string(flag)) { /* a flag string one short, or not 0/1 */
                char s[64];
                snprintf(s, sizeof s, "%s", json_string_value(flag));
                json_t *saved = json_incref(flag);
                s[strlen(s) - 1] = '\0';
                json_object_set_new(parts[p], key, json_string(s));
                write_doc(good, "bad.json");
                s[0] = '2';
                json_object_set_new(parts[p], key, json_string(s));
                write_doc(good, "bad2.json");
                json_object_set_new(parts[p], key, saved);
                assert_refused("bad.json", "out of shape");
                assert_refused("bad2.json", "out of shape");
            }
        }
    /* a shard that says it holds other images than its index gives it */
    json_t *doc = json_deep_copy(good);
    json_object_set_new(json_object_get(doc, "shard"), "first", json_integer(1));
    write_doc(doc, "bad.json");
    assert_refused("bad.json", "must hold the records of images 0..1");
    json_object_set_new(json_object_get(doc, "shard"), "count", json_integer(2000000));
    write_doc(doc, "bad.json");
    assert_refused("bad.json", "out of range");
    json_decref(doc);
    /* the untouched document still merges */
    write_doc(good, "again.json");
    free(ok("evaluate --merge %s/again.json", dir));
    for (size_t b = 0; b < sizeof bad_values / sizeof bad_values[0]; b++)
        json_decref(bad_values[b]);
    json_decref(good);
    assert_true(cases > 100);
}

static void test_bad_usage_is_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "evaluate --shard 3/3", "evaluate --shard 1", "evaluate --shard a/b",
        "evaluate --shard 0/0", "evaluate --n 2 -o x.json",
        "evaluate --n 2 --shard 0/2 --server http://127.0.0.1:9",
        "evaluate --merge", "evaluate --merge --seed 2 x.json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        int rc = run(bad[i], 1, &out);
        if (rc != 2 || !strstr(out, "blindspot evaluate:"))
            fail_msg("'%s' exited %d (want 2) saying: %s", bad[i], rc, out);
        free(out);
    }
    char *help = ok("evaluate --help");
    assert_non_null(strstr(help, "--shard I/N"));
    assert_non_null(strstr(help, "--merge FILE..."));
    assert_non_null(strstr(help, "timings"));
    free(help);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_shards_merge_to_the_whole_run),
        cmocka_unit_test(test_one_shard),
        cmocka_unit_test(test_more_shards_than_images),
        cmocka_unit_test(test_shards_that_do_not_fit_are_refused),
        cmocka_unit_test(test_hostile_shard_documents_are_refused),
        cmocka_unit_test(test_bad_usage_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
