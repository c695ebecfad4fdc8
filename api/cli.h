/* cli — the `blindspot` command line: one function per subcommand, and the
 * small helpers they share (option values, JSON output, data folder, and
 * the daemon a command may run on instead, cli_remote.c). A command's
 * result is a JSON document (api/..._json.h), the one the daemon answers;
 * --json prints it, text is a printer of it, so that a run here and one on
 * the daemon print the same. Subcommands return the process exit status:
 * 0 success, 1 failure, 2 bad usage. */
#ifndef BS_CLI_H
#define BS_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

int cli_train(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_predict(int argc, char **argv);
int cli_import_mnist(int argc, char **argv);
int cli_attack(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_lipschitz(int argc, char **argv);
int cli_units(int argc, char **argv);
int cli_reproduce(int argc, char **argv);
int cli_evaluate(int argc, char **argv);
int cli_health(int argc, char **argv);

/* The data folder: --data, else $BLINDSPOT_DATA, else "data". */
const char *cli_data_dir(const char *flag);

/* The dataset a command reads when --dataset is flag: flag, else the one
 * recorded in m, else mnist. The test split of a P1/P2 half is its
 * dataset's, named so (mnist:P1 test is mnist test), as the daemon names
 * it. */
struct bs_model;
const char *cli_dataset_of(const struct bs_model *m, const char *flag, const char *split);

/* The largest image (width*height) the command line decodes. */
#define CLI_MAX_PIXELS (4096 * 4096)

/* A whole file (64 MiB at most), malloc'd, *len its size; NULL with a
 * message in err. */
uint8_t *cli_read_file(const char *path, size_t *len, char *err);

/* Parses a whole decimal number into *out; prints a usage error naming the
 * option and returns -1 when it is not one, or is outside [lo,hi]. */
int cli_parse_long(const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *opt, const char *s, double lo, double hi, float *out);

/* Loads a model file: ONNX when its name ends in .onnx (core/onnx.h),
 * safetensors otherwise. NULL with a message in err. */
struct bs_model *cli_load_model(const char *path, char *err);

/* A model's name: its file name without folder and .safetensors or .onnx. */
const char *cli_model_name(const char *path, char *buf, size_t n);

/* Loads every *.safetensors in dir (sorted by name) that takes the same
 * input as m, except the file `skip`, appending {name, model} to report
 * (names malloc'd) up to CLI_MAX_REPORT. Returns 0 or -1 with a message. */
#define CLI_MAX_REPORT 64
struct bs_report_model;
int cli_load_models(const char *dir, const struct bs_model *m, const char *skip,
                    struct bs_report_model *report, int *n, char *err);

/* KEY=VALUE into obj: VALUE as JSON when it parses (numbers, true,
 * false), else as a string. Returns -1 when there is no KEY=. */
int cli_add_param(json_t *obj, const char *kv);

/* Progress of a run of attacks on stderr: a line redrawn in place on a
 * terminal, a line every 50 attacks otherwise. Use as a bs_control's
 * progress with a cli_progress whose start is set as its ctx. */
typedef struct cli_progress {
    time_t start;
    int tty;
} cli_progress;
void cli_show_progress(void *ctx, int done, int total);

/* Prints an attack answer (api/attack_json.h's document, from the core or
 * from POST /v1/attacks) as `blindspot attack`'s text on stdout; a
 * cli_printer. */
void cli_attack_print_text(const json_t *answer);

/* Prints j as indented JSON on stdout (reals with the daemon's 9
 * significant digits) and releases it. */
void cli_print_json(json_t *j);

/* The text form of a command's document (the JSON --json prints). */
typedef void (*cli_printer)(const json_t *doc);
/* Prints doc, a command's result whether built here or read from the
 * daemon, and releases it: with json as cli_print_json does, else through
 * print, given the document read back from that JSON text so that a local
 * and a remote run print the same digits. doc NULL means out of memory.
 * Returns the exit status (0, or 1 after a message naming cmd). */
int cli_output(const char *cmd, json_t *doc, int json, cli_printer print);

/* ---- remote runs (cli_remote.c) ---- */

/* The help of every command that can run on the daemon. */
#define CLI_SERVER_HELP                                                                     \
    "  --server URL     run on the daemon at URL (http://HOST:PORT) instead of here;\n"     \
    "                   also `blindspot --server URL COMMAND`, or $BLINDSPOT_SERVER.\n"     \
    "                   Models are named by their resident name: a path's file name\n"     \
    "                   without .safetensors or .onnx (models/cnn.safetensors is cnn);\n"  \
    "                   the output is the same as a local run's\n"                          \
    "\n"                                                                                    \
    "Environment: BLINDSPOT_SERVER the daemon's URL; BLINDSPOT_TOKEN a token sent as\n"     \
    "`Authorization: Bearer TOKEN`; BLINDSPOT_DATA the data folder of local runs.\n"        \
    "Exit status 1, with the server's message, when the daemon refuses a request or\n"     \
    "cannot be reached.\n"

/* The daemon given before the command (`blindspot --server URL CMD`). */
void cli_set_server(const char *url);
/* `blindspot --token TOKEN COMMAND ...`: the bearer token sent to the
 * daemon, in place of $BLINDSPOT_TOKEN. */
void cli_set_token(const char *token);
/* The token to send: --token's, else $BLINDSPOT_TOKEN, else NULL. */
const char *cli_token(void);
/* The daemon a command runs on: flag (its --server), else the one given
 * before the command, else $BLINDSPOT_SERVER; NULL to run here. */
const char *cli_server(const char *flag);

/* One request to the daemon at server: path with a body of len bytes of
 * content_type (body NULL: none). Returns the answer's JSON document, or
 * NULL after printing the error for cmd (the server's message, or the URL
 * that could not be reached). */
json_t *cli_remote_call(const char *cmd, const char *server, const char *method,
                        const char *path, const char *content_type, const void *body,
                        size_t len);
/* The same with a JSON body (taken; NULL: none). */
json_t *cli_remote_json(const char *cmd, const char *server, const char *method,
                        const char *path, json_t *body);
/* POSTs body (taken) to path as a job and follows it to its result, its
 * progress shown by cli_show_progress on progress (may be NULL). NULL
 * after printing the error. */
json_t *cli_remote_job(const char *cmd, const char *server, const char *path, json_t *body,
                       cli_progress *progress);

/* Prints "blindspot CMD: message" on stderr; returns 1. */
int cli_fail(const char *cmd, const char *fmt, ...);

#endif
