/* errors — every error the daemon can answer, in one table: its code (the
 * stable snake_case word programs read), its HTTP status and what it means.
 * Every error answer goes through this table, so a code always comes with
 * the same status; api/openapi.yaml lists the same codes as an enum and a
 * test keeps the two equal.
 *
 * On /v1 an error is {"error": {"code": "...", "message": "..."}}; on /v2
 * it is the Open Inference Protocol's {"error": "...", "code": "..."}, the
 * message where the protocol's clients look for it and the code beside. */
#ifndef BS_API_ERRORS_H
#define BS_API_ERRORS_H

#include <jansson.h>

/* X(NAME, "code", status, "meaning") */
#define BS_ERROR_TABLE(X)                                                                      \
    X(INVALID_PATH, "invalid_path", 400,                                                       \
      "The path holds a NUL or another control character once decoded.")                      \
    X(INVALID_JSON, "invalid_json", 400, "The body is not valid JSON, or not a JSON object.")  \
    X(EMPTY_BODY, "empty_body", 400, "The request needs a body and has none.")                 \
    X(INVALID_FORM, "invalid_form", 400, "The multipart/form-data body cannot be parsed.")     \
    X(INVALID_REQUEST, "invalid_request", 400,                                                 \
      "A field has the wrong type or form; the message names it.")                             \
    X(INVALID_TIMEOUT, "invalid_timeout", 400, "timeout is not a positive number of seconds.") \
    X(MISSING_FIELD, "missing_field", 400, "A required field is missing.")                     \
    X(UNKNOWN_FIELD, "unknown_field", 400, "The body has a field the endpoint does not take.") \
    X(MISSING_IMAGE, "missing_image", 400, "The request needs an image and has none.")         \
    X(INVALID_IMAGE, "invalid_image", 400,                                                     \
      "The image is not a PNG or JPEG that can be decoded, or its description is malformed.")  \
    X(INVALID_BASE64, "invalid_base64", 400, "The image's text is not valid base64.")          \
    X(INVALID_FORMAT, "invalid_format", 400, "The format asked for is not one that is served.") \
    X(INVALID_INDEX, "invalid_index", 400, "A sample index is not a whole number.")            \
    X(INVALID_INPUT, "invalid_input", 400,                                                     \
      "An inference input's name, datatype, shape or data does not fit the model.")            \
    X(TOO_MANY_INPUTS, "too_many_inputs", 400, "The model has one input; more were sent.")     \
    X(UNKNOWN_OUTPUT, "unknown_output", 400,                                                   \
      "The model has no output of that name, or the output cannot be given as asked.")         \
    X(UNSUPPORTED_DATATYPE, "unsupported_datatype", 400,                                       \
      "The tensor's datatype cannot be converted to the model's FP32 (BOOL, BYTES, unknown).") \
    X(INVALID_BINARY_DATA, "invalid_binary_data", 400,                                         \
      "The binary tensor data (Inference-Header-Content-Length, binary_data_size) does not "   \
      "match the body.")                                                                       \
    X(UNAUTHORIZED, "unauthorized", 401,                                                       \
      "No access token, or not one the daemon knows (--auth-tokens).")                          \
    X(FORBIDDEN, "forbidden", 403, "The access token lacks the scope the endpoint needs.")      \
    X(ORIGIN_NOT_ALLOWED, "origin_not_allowed", 403,                                           \
      "The request comes from a web page of an origin that is not allowed (--cors-origins).")  \
    X(HOST_NOT_ALLOWED, "host_not_allowed", 403,                                               \
      "The Host header names a host the daemon does not serve (--allowed-hosts).")             \
    X(NOT_FOUND, "not_found", 404, "No endpoint has this path.")                               \
    X(MODEL_NOT_FOUND, "model_not_found", 404, "No resident model has this name.")             \
    X(MODEL_VERSION_NOT_FOUND, "model_version_not_found", 404,                                 \
      "The model has no such version (every model has version \"1\" only).")                  \
    X(DATASET_NOT_FOUND, "dataset_not_found", 404, "No loaded dataset split has this name.")   \
    X(SAMPLE_NOT_FOUND, "sample_not_found", 404, "The dataset split has no sample at that index.") \
    X(JOB_NOT_FOUND, "job_not_found", 404, "No job has this id (or it expired).")              \
    X(METHOD_NOT_ALLOWED, "method_not_allowed", 405, "The path is served, not with this method.") \
    X(NOT_ACCEPTABLE, "not_acceptable", 406,                                                   \
      "The Accept header asks for a media type this answer cannot be given in.")               \
    X(REQUEST_TIMEOUT, "request_timeout", 408,                                                 \
      "The request's head or body did not arrive in time (--header-timeout, --body-timeout).") \
    X(BODY_TOO_LARGE, "body_too_large", 413, "The body is larger than --max-body.")            \
    X(URI_TOO_LONG, "uri_too_long", 414, "The request's URI is longer than the daemon takes.") \
    X(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415,                                   \
      "The body's Content-Type is not one the endpoint takes.")                                \
    X(IMAGE_TOO_LARGE, "image_too_large", 422, "The image has more pixels than --max-pixels.") \
    X(INVALID_RESIZE, "invalid_resize", 422,                                                   \
      "resize is not one of stretch, crop, pad and pad-right.")                                \
    X(IMAGE_NOT_CONVERTIBLE, "image_not_convertible", 422,                                     \
      "The image decodes but cannot be made into the model's input.")                          \
    X(VALUE_OUT_OF_RANGE, "value_out_of_range", 422,                                           \
      "A number is outside the range its field allows (pixels in [0,1], floats finite).")      \
    X(SHAPE_MISMATCH, "shape_mismatch", 422, "An image or tensor has another shape than the model takes.") \
    X(INDEX_OUT_OF_RANGE, "index_out_of_range", 422, "A sample index is past the split's end.") \
    X(OUT_OF_RANGE, "out_of_range", 422, "A parameter is outside its allowed range.")          \
    X(LAYER_OUT_OF_RANGE, "layer_out_of_range", 422, "The model has no such layer.")           \
    X(UNIT_OUT_OF_RANGE, "unit_out_of_range", 422, "The layer has no such unit.")              \
    X(K_OUT_OF_RANGE, "k_out_of_range", 422, "k is outside the range the endpoint allows.")    \
    X(INVALID_PARAMS, "invalid_params", 422, "An attack parameter is unknown or out of range.") \
    X(INVALID_TARGET, "invalid_target", 422, "A target label is not one of the model's classes.") \
    X(INVALID_ATTACK, "invalid_attack", 422, "The attack cannot run on this model and image.") \
    X(DUPLICATE_MODEL, "duplicate_model", 422, "A list of models names one model twice.")      \
    X(TOO_MANY_MODELS, "too_many_models", 422, "The request lists more models than allowed.")  \
    X(EVALUATION_TOO_LARGE, "evaluation_too_large", 422,                                       \
      "The evaluation asks for more attacks than one job may run.")                            \
    X(URL_REFUSED, "url_refused", 422,                                                         \
      "The outbound guard refuses the URL (scheme, user info, or an address it resolves to).") \
    X(FETCH_FAILED, "fetch_failed", 422,                                                       \
      "An image URL could not be fetched (connection, status, type, size or time).")           \
    X(MODEL_LOAD_FAILED, "model_load_failed", 422,                                             \
      "The model's file failed to load; a previous version keeps serving.")                    \
    X(RATE_LIMITED, "rate_limited", 429,                                                       \
      "The client sent more compute requests than --rate-limit allows; see Retry-After.")      \
    X(TOO_MANY_CLIENT_JOBS, "too_many_client_jobs", 429,                                       \
      "The client has --max-client-jobs jobs queued or running.")                              \
    X(TOO_MANY_CLIENT_REQUESTS, "too_many_client_requests", 429,                               \
      "The client has --max-client-work compute requests in flight.")                          \
    X(CLIENT_CLOSED, "client_closed", 499, "The client closed the connection before the answer.") \
    X(OUT_OF_MEMORY, "out_of_memory", 500, "The server ran out of memory.")                    \
    X(ENCODE_FAILED, "encode_failed", 500, "The answer (an image, a document) could not be built.") \
    X(ANALYSIS_FAILED, "analysis_failed", 500, "The analysis stopped with an error.")          \
    X(EVALUATION_FAILED, "evaluation_failed", 500, "The evaluation stopped with an error.")    \
    X(INTERNAL_ERROR, "internal_error", 500, "The work ended without an answer.")              \
    X(NOT_READY, "not_ready", 503, "The server is still loading its models.")                  \
    X(QUEUE_FULL, "queue_full", 503, "Every place in the worker queue is taken.")              \
    X(TOO_MANY_JOBS, "too_many_jobs", 503, "The job table is full of queued and running jobs.") \
    X(SHUTTING_DOWN, "shutting_down", 503, "The server is shutting down.")                     \
    X(STATE_UNAVAILABLE, "state_unavailable", 503, "The job could not be written to the state file.") \
    X(NOT_RESTARTED, "not_restarted", 503, "The daemon restarted and could not run the job again.") \
    X(CANCELLED, "cancelled", 503, "The work was stopped before it finished.")                 \
    X(DEADLINE_EXCEEDED, "deadline_exceeded", 504, "The time budget ran out.")

typedef enum bs_error_code {
#define BS_ERROR_ENUM(name, code, status, meaning) BS_E_##name,
    BS_ERROR_TABLE(BS_ERROR_ENUM)
#undef BS_ERROR_ENUM
    BS_E_COUNT
} bs_error_code;

/* One row of the table. */
typedef struct bs_error_info {
    const char *code;    /* snake_case, stable */
    int status;          /* the HTTP status it is answered with */
    const char *meaning; /* one sentence, for documentation */
} bs_error_info;

/* The row of e (e < BS_E_COUNT). */
const bs_error_info *bs_error_get(bs_error_code e);
/* The error of that code name, or -1. */
int bs_error_find(const char *code);

/* {"code": ..., "message": message}: the /v1 error object. */
json_t *bs_error_json(bs_error_code e, const char *message);

/* An error as a value, for api/ functions that validate what a user sent:
 * the code the daemon answers with, and the message both the daemon and
 * the command line print. */
#define BS_API_MESSAGE_LEN 512
typedef struct bs_api_error {
    bs_error_code code;
    char message[BS_API_MESSAGE_LEN];
} bs_api_error;

/* Fills err with code and a message formatted like printf; returns -1, so
 * that `return bs_api_fail(err, ...);` reads as it does. */
int bs_api_fail(bs_api_error *err, bs_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
