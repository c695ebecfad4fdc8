/* attack_json — attack parameters from JSON and the attack's answer as JSON
 * (see attack_json.h for the document). */
#include "api/attack_json.h"
#include "core/error.h"

#include "api/base64.h"
#include "api/image.h"
#include "core/layers.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One parameter's JSON value into its field of p (core/attack.h's table). */
static int set_param(bs_attack_params *p, const bs_attack_param_info *f, const json_t *v,
                     char *err)
{
    char *field = (char *)p + f->offset;
    switch (f->kind) {
    case BS_PARAM_BOOL:
        if (!json_is_boolean(v))
            return bs_fail(err, "params.%s must be true or false", f->name);
        *(int *)field = json_is_true(v);
        return 0;
    case BS_PARAM_INT:
        if (!json_is_integer(v) || json_integer_value(v) < -2147483647 ||
            json_integer_value(v) > 2147483647)
            return bs_fail(err, "params.%s must be a whole number", f->name);
        *(int *)field = (int)json_integer_value(v);
        return 0;
    case BS_PARAM_SEED:
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return bs_fail(err, "params.%s must be a non-negative whole number", f->name);
        *(uint64_t *)field = (uint64_t)json_integer_value(v);
        return 0;
    case BS_PARAM_DOUBLE:
    case BS_PARAM_FLOAT:
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            return bs_fail(err, "params.%s must be a number", f->name);
        if (f->kind == BS_PARAM_DOUBLE)
            *(double *)field = json_number_value(v);
        else
            *(float *)field = (float)json_number_value(v);
        return 0;
    case BS_PARAM_CHOICE: {
        const char *s = json_string_value(v);
        for (int i = 0; i < 2; i++)
            if (s && !strcmp(s, f->choices[i])) {
                *(int *)field = f->values[i];
                return 0;
            }
        return bs_fail(err, "params.%s must be \"%s\" or \"%s\"", f->name, f->choices[0],
                       f->choices[1]);
    }
    }
    return -1;
}

int bs_attack_params_from_json(const json_t *obj, const char *method,
                               bs_attack_params *p, char *err)
{
    int mi = bs_attack_method_parse(method ? method : "lbfgs");
    if (mi < 0) {
        char names[128];
        return bs_fail(err, "unknown method \"%s\" (%s)", method,
                       bs_attack_method_list(", ", names, sizeof names));
    }
    *p = bs_attack_defaults((bs_attack_method)mi);
    if (!obj || json_is_null(obj))
        return bs_attack_params_check(p, err);
    if (!json_is_object(obj))
        return bs_fail(err, "params must be an object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        const bs_attack_param_info *f = bs_attack_param_find(key);
        if (!f)
            return bs_fail(err, "unknown parameter params.%s", key);
        if (!bs_attack_param_applies((bs_attack_method)mi, key)) {
            char list[200];
            size_t used = 0;
            for (const char *s = bs_attack_methods[mi].params; *s && used < sizeof list;) {
                int len = (int)strcspn(s, " ");
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%.*s",
                                         used ? ", " : "", len, s);
                s += len + strspn(s + len, " ");
            }
            return bs_fail(err, "params.%s does not apply to %s, whose parameters are %s", key,
                           bs_attack_methods[mi].name, list);
        }
        if (set_param(p, f, v, err))
            return -1;
    }
    return bs_attack_params_check(p, err);
}

json_t *bs_attack_params_to_json(const bs_attack_params *p)
{
    json_t *o = json_object();
    for (int i = 0; i < BS_ATTACK_N_PARAMS; i++) {
        const bs_attack_param_info *f = &bs_attack_param_table[i];
        const char *field = (const char *)p + f->offset;
        json_t *v = NULL;
        switch (f->kind) {
        case BS_PARAM_BOOL: v = json_boolean(*(const int *)field); break;
        case BS_PARAM_INT: v = json_integer(*(const int *)field); break;
        case BS_PARAM_SEED: v = json_integer((json_int_t)*(const uint64_t *)field); break;
        case BS_PARAM_DOUBLE: v = json_real(*(const double *)field); break;
        case BS_PARAM_FLOAT: {
            /* a float's shortest decimal (1e-3, not 0.00100000005) */
            char num[32];
            snprintf(num, sizeof num, "%.7g", (double)*(const float *)field);
            v = json_real(strtod(num, NULL));
            break;
        }
        case BS_PARAM_CHOICE: {
            char name[32];
            v = json_string(bs_attack_param_format(p, f, name, sizeof name));
            break;
        }
        }
        json_object_set_new(o, f->name, v);
    }
    return o;
}

int bs_attack_targets_from_json(const json_t *v, int classes, int original,
                                int *targets, int *k, char *err)
{
    *k = 0;
    if (json_is_string(v) && !strcmp(json_string_value(v), "all")) {
        for (int c = 0; c < classes && *k < BS_MAX_TARGETS; c++)
            if (c != original)
                targets[(*k)++] = c;
        return 0;
    }
    if (json_is_integer(v)) {
        json_int_t t = json_integer_value(v);
        if (t < 0 || t >= classes)
            return bs_fail(err, "target %lld is not a class of this model (0..%d)",
                        (long long)t, classes - 1);
        targets[(*k)++] = (int)t;
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        if (json_array_size(v) == 0 || json_array_size(v) > BS_MAX_TARGETS)
            return bs_fail(err, "target lists hold 1 to %d labels", BS_MAX_TARGETS);
        json_array_foreach(v, i, e) {
            json_int_t t = json_integer_value(e);
            if (!json_is_integer(e) || t < 0 || t >= classes)
                return bs_fail(err, "target[%zu] is not a class of this model (0..%d)",
                            i, classes - 1);
            for (int j = 0; j < *k; j++)
                if (targets[j] == t)
                    return bs_fail(err, "target %lld is listed twice", (long long)t);
            targets[(*k)++] = (int)t;
        }
        return 0;
    }
    return bs_fail(err, "target must be a label, a list of labels, or \"all\"");
}

int bs_image_out_parse(const char *s, bs_image_out *out)
{
    if (!strcmp(s, "png"))
        *out = BS_OUT_PNG;
    else if (!strcmp(s, "jpeg"))
        *out = BS_OUT_JPEG;
    else if (!strcmp(s, "floats"))
        *out = BS_OUT_FLOATS;
    else
        return -1;
    return 0;
}

static json_t *norms_json(const bs_norms *n)
{
    return json_pack("{s:i, s:f, s:f, s:f, s:f}", "l0", n->l0, "l1", n->l1, "l2", n->l2,
                     "linf", n->linf, "distortion", n->distortion);
}

/* An (C,H,W) image as {"format","width","height","channels","data"}: 8-bit
 * pixels encoded as PNG or JPEG and base64, or the floats themselves. */
static json_t *image_json(const float *v, const uint8_t *bytes, const int shape[3],
                          bs_image_out out, char *err)
{
    int C = shape[0], H = shape[1], W = shape[2];
    size_t n = (size_t)C * H * W;
    json_t *o = json_pack("{s:s, s:i, s:i, s:i}", "format",
                          out == BS_OUT_PNG ? "png" : out == BS_OUT_JPEG ? "jpeg" : "floats",
                          "width", W, "height", H, "channels", C);
    if (out == BS_OUT_FLOATS) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_real(v[i]));
        json_object_set_new(o, "data", a);
        return o;
    }
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    char *b64 = NULL;
    if (!bs_image_encode_planes(bytes, C, H, W, out == BS_OUT_PNG ? BS_IMAGE_PNG : BS_IMAGE_JPEG,
                                95, &enc, &enc_len, err))
        b64 = bs_base64_encode(enc, enc_len);
    free(enc);
    if (!b64) {
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "data", json_string(b64));
    free(b64);
    return o;
}

json_t *bs_attack_answer_json(const char *model_name, const bs_model *m,
                              const float *x, const bs_attack_params *p,
                              const bs_attack_result *res, int k,
                              const bs_report_model *report, int n_report,
                              bs_image_out out, char *err)
{
    size_t n = m->input_size;
    bs_workspace *ws = bs_workspace_new(m, 1);
    json_t *doc = NULL;
    if (!ws) {
        bs_fail(err, "out of memory");
        return NULL;
    }
    const float *logits = bs_model_forward(m, ws, x, 1);
    json_t *probs = json_array();
    int any = 0; /* softmax needs a label for its loss; any will do */
    bs_softmax_xent_forward(ws->probs, NULL, logits, &any, 1, m->classes);
    for (int c = 0; c < m->classes; c++)
        json_array_append_new(probs, json_real(ws->probs[c]));
    doc = json_pack("{s:s, s:s, s:o, s:{s:i, s:o}}", "model", model_name,
                    "method", bs_attack_method_name(p->method),
                    "params", bs_attack_params_to_json(p),
                    "original", "label", bs_argmax(logits, m->classes), "probabilities", probs);
    json_t *results = json_array();
    json_object_set_new(doc, "results", results);
    /* Each reported model's label for x: a model that already said the
     * target there was not fooled by the perturbation. */
    int *said = calloc((size_t)n_report + 1, sizeof *said);
    bs_workspace **rws = calloc((size_t)n_report + 1, sizeof *rws);
    if (!said || !rws) {
        bs_fail(err, "out of memory");
        json_decref(doc);
        doc = NULL;
        k = 0;
    }
    for (int i = 0; i < n_report && doc; i++) {
        const bs_model *rm = report[i].model;
        if (rm->input_size != n || !(rws[i] = bs_workspace_new(rm, 1)))
            continue;
        said[i] = bs_argmax(bs_model_forward(rm, rws[i], x, 1), rm->classes);
    }
    for (int j = 0; j < k; j++) {
        const bs_attack_result *r = &res[j];
        json_t *img = image_json(r->adv, r->adv8, m->input_shape, out, err);
        if (!img) {
            json_decref(doc);
            doc = NULL;
            break;
        }
        json_t *preds = json_array();
        for (int i = 0; i < n_report; i++) {
            const bs_model *rm = report[i].model;
            if (!rws[i])
                continue;
            const float *lg = bs_model_forward(rm, rws[i], r->adv, 1);
            int label = bs_argmax(lg, rm->classes);
            bs_softmax_xent_forward(rws[i]->probs, NULL, lg, &label, 1, rm->classes);
            json_array_append_new(preds, json_pack(
                "{s:s, s:i, s:f, s:i, s:b}", "model", report[i].name, "label", label,
                "probability", (double)rws[i]->probs[label], "original_label", said[i],
                "fooled", label == r->target && said[i] != r->target));
        }
        json_array_append_new(results, json_pack(
            "{s:i, s:s, s:b, s:b, s:b, s:i, s:f, s:f, s:i, s:i, s:i, s:f, s:o, s:o, s:o, s:o}",
            "target", r->target, "status", bs_attack_status_name(r->status),
            "success", r->success, "success_float", r->success_float,
            "untargeted", r->untargeted, "label", r->adversarial,
            "target_probability", (double)r->target_prob, "c", r->c,
            "iterations", r->iterations, "evaluations", r->evaluations, "runs", r->runs,
            "seconds", r->seconds, "norms", norms_json(&r->norms),
            "norms_float", norms_json(&r->norms_float), "image", img,
            "predictions", preds));
    }
    for (int i = 0; rws && i < n_report; i++)
        bs_workspace_free(rws[i]);
    free(rws);
    free(said);
    bs_workspace_free(ws);
    return doc;
}
