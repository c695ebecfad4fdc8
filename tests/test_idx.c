/* test_idx — the IDX reader and writer: round trips (plain and gzip, ubyte
 * and float), and every way a file can be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include <cmocka.h>

#include "core/idx.h"
#include "core/rng.h"
#include "tests/testutil.h"

static int setup_dir(void **state)
{
    *state = tu_tmpdir();
    return *state ? 0 : -1;
}

static int teardown_dir(void **state)
{
    tu_rmtree(*state);
    free(*state);
    return 0;
}

static const char *path_in(void **state, const char *file)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", (const char *)*state, file);
    return path;
}

/* Asserts that err contains want (and prints err when it does not). */
static void assert_err_has(const char *err, const char *want)
{
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* Reads buf from memory and from a file; both must fail naming the problem. */
static void assert_refused(void **state, const uint8_t *buf, size_t len,
                           const char *want)
{
    char err[BS_ERR_LEN] = "";
    bs_idx idx;
    assert_int_equal(bs_idx_read_buffer(buf, len, &idx, err), -1);
    assert_err_has(err, want);
    assert_null(idx.data);

    const char *path = path_in(state, "bad.idx");
    assert_int_equal(tu_write_file(path, buf, len), 0);
    err[0] = '\0';
    assert_int_equal(bs_idx_read(path, &idx, err), -1);
    assert_err_has(err, want);
    assert_err_has(err, path);
    assert_null(idx.data);
}

static bs_idx make_ubyte(void)
{
    bs_idx idx = {.type = BS_IDX_UBYTE, .ndims = 3, .dims = {5, 3, 4}, .count = 60};
    uint8_t *b = malloc(idx.count);
    for (size_t i = 0; i < idx.count; i++)
        b[i] = (uint8_t)(i * 37 + 11);
    idx.data = b;
    return idx;
}

static bs_idx make_float(void)
{
    bs_idx idx = {.type = BS_IDX_FLOAT, .ndims = 4, .dims = {2, 1, 3, 5}, .count = 30};
    float *f = malloc(idx.count * sizeof *f);
    for (size_t i = 0; i < idx.count; i++)
        f[i] = (float)i / 7.0f - 1.5f;
    idx.data = f;
    return idx;
}

static void round_trip(void **state, const bs_idx *idx, const char *file)
{
    char err[BS_ERR_LEN] = "";
    const char *path = path_in(state, file);
    assert_int_equal(bs_idx_write(path, idx, err), 0);

    bs_idx back;
    if (bs_idx_read(path, &back, err) != 0)
        fail_msg("%s", err);
    assert_int_equal(back.type, idx->type);
    assert_int_equal(back.ndims, idx->ndims);
    assert_memory_equal(back.dims, idx->dims, sizeof idx->dims);
    assert_int_equal(back.count, idx->count);
    size_t esize = idx->type == BS_IDX_FLOAT ? 4 : 1;
    assert_memory_equal(back.data, idx->data, idx->count * esize);
    bs_idx_free(&back);
    assert_null(back.data);
}

/* Is the file gzip (1f 8b) or plain IDX (00 00)? */
static int is_gzip(const char *path)
{
    size_t len;
    uint8_t *b = tu_read_file(path, &len);
    assert_non_null(b);
    int gz = len >= 2 && b[0] == 0x1f && b[1] == 0x8b;
    free(b);
    return gz;
}

static void test_round_trip_ubyte_plain(void **state)
{
    bs_idx idx = make_ubyte();
    round_trip(state, &idx, "u.idx");
    assert_false(is_gzip(path_in(state, "u.idx")));
    bs_idx_free(&idx);
}

static void test_round_trip_ubyte_gz(void **state)
{
    bs_idx idx = make_ubyte();
    round_trip(state, &idx, "u.idx.gz");
    assert_true(is_gzip(path_in(state, "u.idx.gz")));
    bs_idx_free(&idx);
}

static void test_round_trip_float_plain(void **state)
{
    bs_idx idx = make_float();
    round_trip(state, &idx, "f.idx");
    bs_idx_free(&idx);
}

static void test_round_trip_float_gz(void **state)
{
    bs_idx idx = make_float();
    round_trip(state, &idx, "f.idx.gz");
    bs_idx_free(&idx);
}

/* The bytes on disk are the format's: header, big-endian dims and floats. */
static void test_float_layout_is_big_endian(void **state)
{
    float one = 1.0f;
    bs_idx idx = {.type = BS_IDX_FLOAT, .ndims = 1, .dims = {1}, .count = 1, .data = &one};
    char err[BS_ERR_LEN];
    const char *path = path_in(state, "one.idx");
    assert_int_equal(bs_idx_write(path, &idx, err), 0);
    size_t len;
    uint8_t *b = tu_read_file(path, &len);
    const uint8_t want[] = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0x80, 0, 0};
    assert_int_equal(len, sizeof want);
    assert_memory_equal(b, want, sizeof want);
    free(b);
}

static void test_read_buffer_ubyte(void **state)
{
    (void)state;
    const uint8_t buf[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
    char err[BS_ERR_LEN];
    bs_idx idx;
    assert_int_equal(bs_idx_read_buffer(buf, sizeof buf, &idx, err), 0);
    assert_int_equal(idx.ndims, 2);
    assert_int_equal(idx.dims[0], 2);
    assert_int_equal(idx.dims[1], 3);
    assert_int_equal(idx.count, 6);
    assert_memory_equal(idx.data, buf + 12, 6);
    bs_idx_free(&idx);
}

/* A zero dim is a valid, empty array. */
static void test_empty_array(void **state)
{
    (void)state;
    const uint8_t buf[] = {0, 0, 8, 2, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF};
    char err[BS_ERR_LEN];
    bs_idx idx;
    assert_int_equal(bs_idx_read_buffer(buf, sizeof buf, &idx, err), 0);
    assert_int_equal(idx.count, 0);
    assert_null(idx.data);
}

static void test_bad_magic(void **state)
{
    const uint8_t buf[] = {0x50, 0x4B, 8, 1, 0, 0, 0, 1, 7};
    assert_refused(state, buf, sizeof buf, "bad magic");
}

static void test_unsupported_type(void **state)
{
    const uint8_t buf[] = {0, 0, 0x0B, 1, 0, 0, 0, 1, 0, 7};
    assert_refused(state, buf, sizeof buf, "unsupported type 0x0B");
}

static void test_truncated_data(void **state)
{
    const uint8_t buf[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4};
    assert_refused(state, buf, sizeof buf, "truncated: expected 6 data bytes, file has 4");
}

static void test_truncated_float_data(void **state)
{
    const uint8_t buf[] = {0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3F, 0x80, 0, 0, 0x3F};
    assert_refused(state, buf, sizeof buf, "truncated: expected 8 data bytes, file has 5");
}

static void test_trailing_bytes(void **state)
{
    const uint8_t buf[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3};
    assert_refused(state, buf, sizeof buf, "trailing bytes after data");
}

static void test_dims_overflow(void **state)
{
    const uint8_t buf[] = {0, 0, 8, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                           0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    assert_refused(state, buf, sizeof buf, "dims overflow");
}

/* 2^29 floats are 2^31 bytes, the limit; one more element is refused. */
static void test_dims_overflow_just_over_limit(void **state)
{
    const uint8_t over[] = {0, 0, 0x0D, 2, 0x20, 0, 0, 1, 0, 0, 0, 1};
    assert_refused(state, over, sizeof over, "dims overflow");
    /* At the limit the header is accepted; the missing data is the error. */
    const uint8_t at[] = {0, 0, 0x0D, 2, 0x20, 0, 0, 0, 0, 0, 0, 1};
    assert_refused(state, at, sizeof at, "truncated: expected 2147483648 data bytes, file has 0");
}

static void test_ndims_zero(void **state)
{
    const uint8_t buf[] = {0, 0, 8, 0, 1, 2};
    assert_refused(state, buf, sizeof buf, "ndims 0");
}

static void test_ndims_too_many(void **state)
{
    const uint8_t buf[] = {0, 0, 8, 5, 0, 0, 0, 1};
    assert_refused(state, buf, sizeof buf, "ndims 5");
}

static void test_empty_file(void **state)
{
    assert_refused(state, (const uint8_t *)"", 0, "empty file");
}

static void test_truncated_header(void **state)
{
    const uint8_t short_magic[] = {0, 0, 8};
    assert_refused(state, short_magic, sizeof short_magic, "truncated header");
    const uint8_t short_dims[] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0};
    assert_refused(state, short_dims, sizeof short_dims,
                   "truncated header: expected 16 bytes, file has 10");
}

/* A gzip file cut short is refused, not read as a short array. */
static void test_truncated_gzip(void **state)
{
    bs_idx idx = make_ubyte();
    char err[BS_ERR_LEN];
    const char *path = path_in(state, "cut.idx.gz");
    assert_int_equal(bs_idx_write(path, &idx, err), 0);
    bs_idx_free(&idx);
    size_t len;
    uint8_t *b = tu_read_file(path, &len);
    assert_int_equal(tu_write_file(path, b, len - 10), 0);
    free(b);
    assert_int_equal(bs_idx_read(path, &idx, err), -1);
    assert_err_has(err, path);
    assert_null(idx.data);
}

static void test_missing_file(void **state)
{
    char err[BS_ERR_LEN];
    bs_idx idx;
    const char *path = path_in(state, "nothing-here.idx");
    assert_int_equal(bs_idx_read(path, &idx, err), -1);
    assert_err_has(err, path);
    assert_err_has(err, "cannot open");
}

/* Every prefix of a valid file, and random corruptions of it, are handled
 * without a crash (the sanitizer builds make this a real check). */
static void test_prefixes_and_corruptions(void **state)
{
    (void)state;
    const uint8_t good[] = {0, 0, 0x0D, 2, 0, 0, 0, 2, 0, 0, 0, 2,
                            0x3F, 0x80, 0, 0, 0, 0, 0, 0, 0x3F, 0, 0, 0, 0x3E, 0x80, 0, 0};
    char err[BS_ERR_LEN];
    bs_idx idx;
    for (size_t len = 0; len < sizeof good; len++) {
        assert_int_equal(bs_idx_read_buffer(good, len, &idx, err), -1);
        assert_null(idx.data);
    }
    assert_int_equal(bs_idx_read_buffer(good, sizeof good, &idx, err), 0);
    assert_true(((float *)idx.data)[0] == 1.0f && ((float *)idx.data)[3] == 0.25f);
    bs_idx_free(&idx);

    bs_rng rng;
    bs_rng_seed(&rng, 7);
    uint8_t buf[sizeof good];
    for (int trial = 0; trial < 20000; trial++) {
        memcpy(buf, good, sizeof good);
        int flips = 1 + (int)bs_rng_below(&rng, 3);
        for (int k = 0; k < flips; k++)
            buf[bs_rng_below(&rng, 12)] = (uint8_t)bs_rng_next(&rng);
        if (bs_idx_read_buffer(buf, sizeof buf, &idx, err) == 0) {
            size_t esize = idx.type == BS_IDX_FLOAT ? 4 : 1;
            assert_int_equal(4 + 4 * (size_t)idx.ndims + idx.count * esize, sizeof buf);
        }
        bs_idx_free(&idx);
    }
}

static void test_write_refuses_inconsistent_count(void **state)
{
    uint8_t b[4] = {0};
    bs_idx idx = {.type = BS_IDX_UBYTE, .ndims = 2, .dims = {2, 3}, .count = 4, .data = b};
    char err[BS_ERR_LEN];
    const char *path = path_in(state, "w.idx");
    assert_int_equal(bs_idx_write(path, &idx, err), -1);
    assert_err_has(err, "count 4");
    idx.count = 6;
    idx.type = 0x0C;
    assert_int_equal(bs_idx_write(path, &idx, err), -1);
    assert_err_has(err, "unsupported type 0x0C");
}

static void test_write_into_missing_folder(void **state)
{
    bs_idx idx = make_ubyte();
    char err[BS_ERR_LEN];
    const char *path = path_in(state, "no/such/folder/x.idx");
    assert_int_equal(bs_idx_write(path, &idx, err), -1);
    assert_err_has(err, "cannot create");
    bs_idx_free(&idx);
}

/* Writing replaces the file in one step and leaves no temporary behind. */
static void test_write_leaves_no_temporary(void **state)
{
    bs_idx idx = make_ubyte();
    char err[BS_ERR_LEN];
    assert_int_equal(bs_idx_write(path_in(state, "a.idx.gz"), &idx, err), 0);
    assert_int_equal(bs_idx_write(path_in(state, "a.idx.gz"), &idx, err), 0);
    bs_idx_free(&idx);
    DIR *dir = opendir(*state);
    assert_non_null(dir);
    int files = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.') {
            assert_string_equal(e->d_name, "a.idx.gz");
            files++;
        }
    closedir(dir);
    assert_int_equal(files, 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_round_trip_ubyte_plain),
        T(test_round_trip_ubyte_gz),
        T(test_round_trip_float_plain),
        T(test_round_trip_float_gz),
        T(test_float_layout_is_big_endian),
        T(test_read_buffer_ubyte),
        T(test_empty_array),
        T(test_bad_magic),
        T(test_unsupported_type),
        T(test_truncated_data),
        T(test_truncated_float_data),
        T(test_trailing_bytes),
        T(test_dims_overflow),
        T(test_dims_overflow_just_over_limit),
        T(test_ndims_zero),
        T(test_ndims_too_many),
        T(test_empty_file),
        T(test_truncated_header),
        T(test_truncated_gzip),
        T(test_missing_file),
        T(test_prefixes_and_corruptions),
        T(test_write_refuses_inconsistent_count),
        T(test_write_into_missing_folder),
        T(test_write_leaves_no_temporary),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
