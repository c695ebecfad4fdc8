/* cli — the `blindspot` command line: one function per subcommand, and the
 * small helpers they share (option values, JSON output, data folder).
 * Subcommands return the process exit status: 0 success, 1 failure, 2 bad
 * usage. */
#ifndef BS_CLI_H
#define BS_CLI_H

#include <jansson.h>
#include <stddef.h>

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

/* The data folder: --data, else $BLINDSPOT_DATA, else "data". */
const char *cli_data_dir(const char *flag);

/* Parses a whole decimal number into *out; prints a usage error naming the
 * option and returns -1 when it is not one, or is outside [lo,hi]. */
int cli_parse_long(const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *opt, const char *s, double lo, double hi, float *out);

/* A model's name: its file name without folder and .safetensors. */
const char *cli_model_name(const char *path, char *buf, size_t n);

/* Loads every *.safetensors in dir (sorted by name) that takes the same
 * input as m, except the file `skip`, appending {name, model} to report
 * (names malloc'd) up to CLI_MAX_REPORT. Returns 0 or -1 with a message. */
#define CLI_MAX_REPORT 64
struct bs_report_model;
struct bs_model;
int cli_load_models(const char *dir, const struct bs_model *m, const char *skip,
                    struct bs_report_model *report, int *n, char *err);

/* KEY=VALUE into obj: VALUE as JSON when it parses (numbers, true,
 * false), else as a string. Returns -1 when there is no KEY=. */
int cli_add_param(json_t *obj, const char *kv);

/* Progress of a run of attacks on stderr: a line redrawn in place on a
 * terminal, a line every 50 attacks otherwise. Use as a bs_eval_progress_fn
 * with a cli_progress whose start is set. */
#include <time.h>
typedef struct cli_progress {
    time_t start;
    int tty;
} cli_progress;
void cli_show_progress(void *ctx, int done, int total);

/* Prints an attack answer (api/attack_json.h's document, from the core or
 * from POST /v1/attacks) as `blindspot attack`'s text on stdout; source
 * names the attacked model in the first line. */
void cli_attack_print_text(const json_t *answer, const char *source);

/* Prints j as indented JSON on stdout and releases it. */
void cli_print_json(json_t *j);

/* Prints "blindspot CMD: message" on stderr; returns 1. */
int cli_fail(const char *cmd, const char *fmt, ...);

#endif
