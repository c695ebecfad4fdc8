/* cli_train — `blindspot train`: train a classifier, measure its train and
 * test error, and save it with its training command in the metadata. */
#include "api/cli.h"

#include "api/attack_json.h"
#include "core/adversarial.h"
#include "core/attack.h"
#include "core/dataset.h"
#include "core/model.h"
#include "core/model_file.h"
#include "core/train.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The usage around the method list, made from core/attack.h's table. */
static const char *train_usage_head =
    "usage: blindspot train --arch SPEC -o FILE [options]\n"
    "\n"
    "Trains a classifier with minibatch SGD (momentum, L2 weight decay, cosine\n"
    "learning-rate decay, reshuffled every epoch), measures its error on the\n"
    "training set and on the dataset's test split, and saves it as safetensors\n"
    "with the measured errors and this command in its metadata. The same\n"
    "command and build give a byte-identical file.\n"
    "\n"
    "  --arch SPEC        architecture (required):\n"
    "                       fc                 softmax regression (FC10)\n"
    "                       fc:100,100         sigmoid MLP, hidden sizes 100 and 100\n"
    "                       fc:100,100:relu    the same with relu (or :tanh) units\n"
    "                       ae:400             classifier on a 400-unit sigmoid\n"
    "                                          autoencoder code (pre-trained first)\n"
    "                       cnn:16,32:128      5x5 conv+relu+2x2 maxpool blocks of 16\n"
    "                                          and 32 channels, a relu hidden layer of 128\n"
    "                       cnn:small          the same as cnn:16,32:128\n"
    "  -o, --output FILE  where to write the model (.safetensors)\n"
    "  --dataset NAME     mnist, mnist:P1, mnist:P2 (the disjoint halves of mnist's\n"
    "                     training set), fashion-mnist, or a folder of IDX files\n"
    "                     (default: mnist)\n"
    "  --data DIR         data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --lambda L         L2 weight decay on the weights (default: 0)\n"
    "  --epochs E         passes over the training set (default: 20)\n"
    "  --pretrain-epochs N  autoencoder pre-training epochs (default: 10 for ae:,\n"
    "                     0 otherwise)\n"
    "  --batch B          minibatch size (default: 64)\n"
    "  --lr LR            initial learning rate (default: 0.1)\n"
    "  --momentum M       momentum (default: 0.9)\n"
    "  --seed S           initialisation and shuffling seed (default: 1)\n"
    "  --json             print the result as JSON on stdout\n"
    "\n"
    "adversarial training (the paper's §4.1):\n"
    "  --adversarial M    replace a share of every minibatch by adversarial examples\n"
    "                     of training images, made against the model being trained\n"
    "                     by the attack M towards a random other label, kept with\n"
    "                     their true labels; they come from a pool remade every\n"
    "                     epoch. M is one of:\n";
static const char *train_usage_tail =
    "  --adv-fraction F   share of each minibatch taken from the pool (default: 0.5)\n"
    "  --adv-pool N       training images attacked per pool (default: 1000)\n"
    "  --adv-refresh B    remake the pool every B minibatches (default: 0, every epoch)\n"
    "  --adv-warmup E     plain epochs before the first pool (default: 1)\n"
    "  --adv-param K=V    a parameter of the pool's attack, as for `blindspot attack`;\n"
    "                     repeatable (lbfgs here defaults to search_steps=3\n"
    "                     max_iterations=50)\n"
    "\n"
    "Progress goes to stderr: a bar on a terminal, a line per epoch otherwise.\n";

static void train_usage(FILE *f)
{
    char methods[128];
    fputs(train_usage_head, f);
    fprintf(f, "                     %s\n", bs_attack_method_list(", ", methods, sizeof methods));
    fputs(train_usage_tail, f);
}

typedef struct progress_ctx {
    int tty;
    struct timespec start;
} progress_ctx;

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void show_progress(void *vctx, const bs_train_progress *p)
{
    progress_ctx *ctx = vctx;
    double elapsed = seconds_since(&ctx->start);
    double eta = p->fraction > 0 ? elapsed * (1.0 - p->fraction) / p->fraction : 0.0;
    char err[32] = "";
    if (strcmp(p->phase, "pretrain"))
        snprintf(err, sizeof err, " error %5.2f%%", 100.0 * p->error);
    if (ctx->tty) {
        char bar[21];
        int fill = (int)(p->fraction * 20.0 + 0.5);
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        fprintf(stderr, "\r%-8s epoch %3d/%-3d [%s] %3.0f%% loss %.4f%s ETA %d:%02d ",
                p->phase, p->epoch, p->epochs, bar, 100.0 * p->fraction, (double)p->loss,
                err, (int)eta / 60, (int)eta % 60);
        if (p->fraction >= 1.0)
            fputc('\n', stderr);
    } else if (p->end_of_epoch) {
        fprintf(stderr, "%s epoch %d/%d loss %.4f%s elapsed %.1fs ETA %.0fs\n",
                p->phase, p->epoch, p->epochs, (double)p->loss, err, elapsed, eta);
    }
    fflush(stderr);
}

static char *join_command(int argc, char **argv)
{
    size_t len = strlen("blindspot") + 1;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, "blindspot");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

int cli_train(int argc, char **argv)
{
    enum { O_ARCH = 1000, O_DATASET, O_DATA, O_LAMBDA, O_EPOCHS, O_PRETRAIN, O_BATCH,
           O_LR, O_MOMENTUM, O_SEED, O_JSON, O_ADV, O_ADV_FRACTION, O_ADV_POOL,
           O_ADV_REFRESH, O_ADV_WARMUP, O_ADV_PARAM };
    static const struct option opts[] = {
        {"arch", required_argument, 0, O_ARCH},
        {"output", required_argument, 0, 'o'},
        {"dataset", required_argument, 0, O_DATASET},
        {"data", required_argument, 0, O_DATA},
        {"lambda", required_argument, 0, O_LAMBDA},
        {"epochs", required_argument, 0, O_EPOCHS},
        {"pretrain-epochs", required_argument, 0, O_PRETRAIN},
        {"batch", required_argument, 0, O_BATCH},
        {"lr", required_argument, 0, O_LR},
        {"momentum", required_argument, 0, O_MOMENTUM},
        {"seed", required_argument, 0, O_SEED},
        {"json", no_argument, 0, O_JSON},
        {"adversarial", required_argument, 0, O_ADV},
        {"adv-fraction", required_argument, 0, O_ADV_FRACTION},
        {"adv-pool", required_argument, 0, O_ADV_POOL},
        {"adv-refresh", required_argument, 0, O_ADV_REFRESH},
        {"adv-warmup", required_argument, 0, O_ADV_WARMUP},
        {"adv-param", required_argument, 0, O_ADV_PARAM},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    bs_train_config cfg = bs_train_defaults();
    const char *arch = NULL, *out = NULL, *dataset = "mnist", *data_flag = NULL;
    int json = 0, pretrain = -1;
    long v;
    int c;
    /* adversarial training: the method, and what the user set (-1: default) */
    const char *adv_method = NULL;
    float adv_fraction = -1.0f;
    long adv_pool = -1, adv_refresh = -1, adv_warmup = -1;
    json_t *adv_params = NULL; /* --adv-param KEY=VALUE, made on first use */
    bs_advtrain_stats adv_stats = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case O_ARCH: arch = optarg; break;
        case 'o': out = optarg; break;
        case O_DATASET: dataset = optarg; break;
        case O_DATA: data_flag = optarg; break;
        case O_LAMBDA:
            if (cli_parse_float("--lambda", optarg, 0.0, 1e6, &cfg.lambda)) return 2;
            break;
        case O_EPOCHS:
            if (cli_parse_long("--epochs", optarg, 1, 100000, &v)) return 2;
            cfg.epochs = (int)v;
            break;
        case O_PRETRAIN:
            if (cli_parse_long("--pretrain-epochs", optarg, 0, 100000, &v)) return 2;
            pretrain = (int)v;
            break;
        case O_BATCH:
            if (cli_parse_long("--batch", optarg, 1, 65536, &v)) return 2;
            cfg.batch = (int)v;
            break;
        case O_LR:
            if (cli_parse_float("--lr", optarg, 1e-9, 100.0, &cfg.lr)) return 2;
            break;
        case O_MOMENTUM:
            if (cli_parse_float("--momentum", optarg, 0.0, 0.999, &cfg.momentum)) return 2;
            break;
        case O_SEED:
            if (cli_parse_long("--seed", optarg, 0, 0x7fffffffL, &v)) return 2;
            cfg.seed = (uint64_t)v;
            break;
        case O_JSON: json = 1; break;
        case O_ADV: adv_method = optarg; break;
        case O_ADV_FRACTION:
            if (cli_parse_float("--adv-fraction", optarg, 0.0, 1.0, &adv_fraction)) goto usage;
            break;
        case O_ADV_POOL:
            if (cli_parse_long("--adv-pool", optarg, 1, 1000000, &adv_pool)) goto usage;
            break;
        case O_ADV_REFRESH:
            if (cli_parse_long("--adv-refresh", optarg, 0, 1000000, &adv_refresh)) goto usage;
            break;
        case O_ADV_WARMUP:
            if (cli_parse_long("--adv-warmup", optarg, 0, 100000, &adv_warmup)) goto usage;
            break;
        case O_ADV_PARAM:
            if (!adv_params)
                adv_params = json_object();
            if (cli_add_param(adv_params, optarg)) {
                fprintf(stderr, "blindspot train: --adv-param wants KEY=VALUE, got '%s'\n",
                        optarg);
                goto usage;
            }
            break;
        case 'h': train_usage(stdout); json_decref(adv_params); return 0;
        default: train_usage(stderr); goto usage;
        }
    }
    if (!arch || !out || optind != argc) {
        fprintf(stderr, "blindspot train: %s\n\n",
                optind != argc ? "unexpected argument" : "--arch and -o are required");
        train_usage(stderr);
        goto usage;
    }
    bs_advtrain_config adv;
    if (adv_method) {
        char aerr[BS_ERR_LEN];
        int mi = bs_attack_method_parse(adv_method);
        adv = bs_advtrain_defaults(mi < 0 ? BS_ATTACK_LBFGS : (bs_attack_method)mi);
        if (!adv_params)
            adv_params = json_object();
        /* the pool's small attack budget unless --adv-param says otherwise */
        if (!json_object_get(adv_params, "search_steps"))
            json_object_set_new(adv_params, "search_steps", json_integer(adv.attack.search_steps));
        if (mi == BS_ATTACK_LBFGS && !json_object_get(adv_params, "max_iterations"))
            json_object_set_new(adv_params, "max_iterations",
                                json_integer(adv.attack.max_iterations));
        if (adv_fraction >= 0.0f) adv.fraction = adv_fraction;
        if (adv_pool >= 0) adv.pool_size = (int)adv_pool;
        if (adv_refresh >= 0) adv.refresh = (int)adv_refresh;
        if (adv_warmup >= 0) adv.warmup_epochs = (int)adv_warmup;
        if (bs_attack_params_from_json(adv_params, adv_method, &adv.attack, aerr) ||
            bs_advtrain_check(&adv, aerr)) {
            fprintf(stderr, "blindspot train: --adversarial: %s\n", aerr);
            goto usage;
        }
    } else if (adv_fraction >= 0.0f || adv_pool >= 0 || adv_refresh >= 0 || adv_warmup >= 0 ||
               json_object_size(adv_params)) {
        fprintf(stderr, "blindspot train: the --adv-* options need --adversarial METHOD\n");
        goto usage;
    }
    json_decref(adv_params);
    adv_params = NULL;
    cfg.pretrain_epochs = pretrain >= 0 ? pretrain : (!strncmp(arch, "ae:", 3) ? 10 : 0);

    char err[BS_ERR_LEN];
    const char *data_dir = cli_data_dir(data_flag);
    bs_dataset train = {0}, test = {0};
    bs_model *m = NULL;
    char *command = NULL;
    int rc = 1;
    if (bs_dataset_load(data_dir, dataset, "train", &train, err) ||
        bs_dataset_load(data_dir, dataset, "test", &test, err)) {
        cli_fail("train", "%s", err);
        goto out;
    }
    bs_layer layers[BS_MAX_LAYERS];
    int n_layers;
    if (bs_arch_parse(arch, train.classes, layers, &n_layers, err) ||
        !(m = bs_model_build(layers, n_layers, train.shape, err))) {
        cli_fail("train", "%s", err);
        goto out;
    }
    progress_ctx pctx = {.tty = isatty(2)};
    clock_gettime(CLOCK_MONOTONIC, &pctx.start);
    if (adv_method ? bs_advtrain(m, &train, &cfg, &adv, show_progress, &pctx, &adv_stats, err)
                   : bs_train(m, &train, &cfg, show_progress, &pctx, err)) {
        cli_fail("train", "%s", err);
        goto out;
    }
    double train_err = bs_evaluate(m, &train, NULL, err);
    double test_err = bs_evaluate(m, &test, NULL, err);
    if (train_err < 0 || test_err < 0) {
        cli_fail("train", "%s", err);
        goto out;
    }
    command = join_command(argc, argv);
    char name[256], num[64];
    int ok = command != NULL;
    ok = ok && !bs_model_set_meta(m, "blindspot.name", cli_model_name(out, name, sizeof name));
    ok = ok && !bs_model_set_meta(m, "blindspot.spec", arch);
    ok = ok && !bs_model_set_meta(m, "blindspot.dataset", dataset);
    snprintf(num, sizeof num, "%.6f", train_err);
    ok = ok && !bs_model_set_meta(m, "blindspot.train_error", num);
    snprintf(num, sizeof num, "%.6f", test_err);
    ok = ok && !bs_model_set_meta(m, "blindspot.test_error", num);
    snprintf(num, sizeof num, "%g", (double)cfg.lambda);
    ok = ok && !bs_model_set_meta(m, "blindspot.lambda", num);
    ok = ok && !bs_model_set_meta(m, "blindspot.command", command);
    if (ok && adv_method) {
        json_t *aj = json_pack("{s:s, s:f, s:i, s:i, s:i, s:o}", "method", adv_method,
                               "fraction", adv.fraction, "pool_size", adv.pool_size,
                               "refresh", adv.refresh, "warmup_epochs", adv.warmup_epochs,
                               "params", bs_attack_params_to_json(&adv.attack));
        char *a = json_dumps(aj, JSON_COMPACT | JSON_SORT_KEYS);
        ok = a && !bs_model_set_meta(m, "blindspot.adversarial", a);
        free(a);
        json_decref(aj);
    }
    if (!ok) {
        cli_fail("train", "out of memory for metadata");
        goto out;
    }
    if (bs_model_save(m, out, err)) {
        cli_fail("train", "%s", err);
        goto out;
    }
    double secs = seconds_since(&pctx.start);
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:f, s:f, s:f}",
                              "model", out, "arch", arch, "dataset", dataset,
                              "parameters", (json_int_t)m->n_params,
                              "train_error", train_err, "test_error", test_err,
                              "seconds", secs);
        if (adv_method)
            json_object_set_new(j, "adversarial", json_pack(
                "{s:s, s:i, s:I, s:I, s:I, s:f, s:f}", "method", adv_method,
                "pools", adv_stats.refreshes, "attacks", (json_int_t)adv_stats.attempted,
                "examples", (json_int_t)adv_stats.made, "used", (json_int_t)adv_stats.used,
                "mean_distortion", adv_stats.mean_distortion,
                "attack_seconds", adv_stats.attack_seconds));
        cli_print_json(j);
    } else {
        printf("%s: %s on %s, %zu parameters, train error %.2f%%, test error %.2f%% "
               "(%d test images), %.1f s\n", out, arch, dataset, m->n_params,
               100.0 * train_err, 100.0 * test_err, test.n, secs);
        if (adv_method)
            printf("  adversarial (%s): %d pools, %ld of %ld attacks made an example "
                   "(mean distortion %.4f), %ld minibatch slots, %.1f s attacking\n",
                   adv_method, adv_stats.refreshes, adv_stats.made, adv_stats.attempted,
                   adv_stats.mean_distortion, adv_stats.used, adv_stats.attack_seconds);
    }
    rc = 0;
out:
    free(command);
    bs_model_free(m);
    bs_dataset_free(&train);
    bs_dataset_free(&test);
    return rc;
usage:
    json_decref(adv_params);
    return 2;
}
