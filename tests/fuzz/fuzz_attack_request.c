/* fuzz_attack_request — api/attack_request.h's parser of POST /v1/attacks,
 * from a JSON body or from multipart form fields, with an optional
 * uploaded file, against the fake caller of tests/fake_caller.h (two
 * models that exist only as shapes, a dataset whose sample i is the
 * constant i/10).
 *
 * The input is the request up to its first NUL, then the uploaded file's
 * bytes (when there is a NUL). A request that is JSON is parsed as it is;
 * any other text is read as form fields, one "name=value" a line, through
 * bs_attack_form_to_json (a line "image=" marks the file as the image
 * part). Promises checked: the answer is 0 or -1; a refusal carries a
 * message and leaves the request empty; an accepted request has a model,
 * targets, an input of the model's size within [0,1] when built from an
 * image, at most max_report models, a timeout >= 0, and the targets
 * resolve, for every possible original label, to labels of the model. */
#include "tests/fuzz/fuzz.h"

#include "api/attack_request.h"

#define FAKE_SAMPLE_CHECK(index, n)                                                          \
    PROMISE((index) >= 0 && (index) < (n), "sample %d of %d asked for", (index), (n))
#include "tests/fake_caller.h"

#include <string.h>

#define MAX_PARTS 16

/* text (NUL-terminated, modified) as form fields "name=value", one a line. */
static json_t *form_request(char *text, const uint8_t *file, size_t file_len,
                            const uint8_t **upload, size_t *upload_len)
{
    bs_form_part parts[MAX_PARTS];
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && n < MAX_PARTS;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        const char *value = eq + 1;
        int is_file = !strcmp(line, "image") && file;
        parts[n++] = (bs_form_part){line, is_file, is_file ? file : (const uint8_t *)value,
                                    is_file ? file_len : strlen(value)};
    }
    return bs_attack_form_to_json(parts, n, upload, upload_len);
}

static void check(const json_t *root, const uint8_t *file, size_t file_len)
{
    bs_attack_request r;
    bs_api_error e = {.code = BS_E_INVALID_JSON, .message = ""};
    int rc = bs_attack_request_parse(root, file, file_len, &fake_env, &r, &e);
    PROMISE(rc == 0 || rc == -1, "answer %d", rc);
    if (rc) {
        PROMISE(e.message[0], "a refusal without a message");
        PROMISE(!r.x && !r.target && !r.report && !r.model, "a refused request owns something");
        return;
    }
    PROMISE(r.model == &digits || r.model == &colour, "no model");
    PROMISE(r.model_name && r.target && r.x, "an accepted request without name, target or input");
    PROMISE(r.n_targets >= 1 && r.n_targets <= r.model->classes, "%d targets", r.n_targets);
    PROMISE(r.n_report >= 0 && r.n_report <= fake_env.max_report && (r.n_report == 0 || r.report),
            "%d report models", r.n_report);
    PROMISE(r.timeout >= 0.0, "timeout %g", r.timeout);
    for (size_t i = 0; i < r.model->input_size; i++)
        PROMISE(r.x[i] >= 0.0f && r.x[i] <= 1.0f, "input %zu is %g", i, (double)r.x[i]);
    for (int original = 0; original < r.model->classes; original++) {
        int targets[BS_MAX_TARGETS], k = -1;
        bs_api_error te = {0};
        if (bs_attack_request_targets(&r, original, targets, &k, &te) == 0) {
            PROMISE(k >= 0 && k <= BS_MAX_TARGETS, "%d targets", k);
            for (int i = 0; i < k; i++)
                PROMISE(targets[i] >= 0 && targets[i] < r.model->classes, "target %d",
                        targets[i]);
        } else {
            PROMISE(te.message[0], "a target refused without a message");
        }
    }
    bs_attack_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    const uint8_t *nul = memchr(buf, '\0', len);
    size_t text_len = nul ? (size_t)(nul - buf) : len;
    const uint8_t *file = nul ? nul + 1 : NULL;
    size_t file_len = nul ? len - text_len - 1 : 0;
    json_t *root = json_loadb((const char *)buf, text_len, JSON_DECODE_ANY, NULL);
    if (root) {
        check(root, file, file_len);
        json_decref(root);
        return 0;
    }
    char *text = malloc(text_len + 1);
    if (!text)
        return 0;
    memcpy(text, buf, text_len);
    text[text_len] = '\0';
    const uint8_t *upload = NULL;
    size_t upload_len = 0;
    root = form_request(text, file, file_len, &upload, &upload_len);
    PROMISE(json_is_object(root), "a form is not a JSON object");
    PROMISE(!upload || (upload == file && upload_len == file_len), "the upload is not the file");
    check(root, upload, upload_len);
    json_decref(root);
    free(text);
    return 0;
}
