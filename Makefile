# Makefile: PGXS build of the nnpg extension.
#
# `make` builds nnpg.so from the math core (src/core, plain C99 + CBLAS) and
# the PostgreSQL glue (src/pg); `make install` installs it into the server
# that $(PG_CONFIG) names; `make installcheck` runs the pg_regress suite in
# sql/ against a running server.  test/ has its own makefiles.

MODULE_big = nnpg

CORE_SRCS = $(sort $(wildcard src/core/*.c))
GLUE_SRCS = $(sort $(wildcard src/pg/*.c))
# ONNX's protobuf messages (src/core/onnx.c): protoc-c generates their C
# code from Debian's onnx.proto (libonnx-dev) into build/ at build time.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
PB_DIR = build/proto
PB_OBJ = $(PB_DIR)/onnx.pb-c.o
OBJS = $(CORE_SRCS:.c=.o) $(GLUE_SRCS:.c=.o) $(PB_OBJ)

EXTENSION = nnpg
DATA = extension/nnpg--0.1.0.sql extension/nnpg--0.2.0.sql \
	extension/nnpg--0.1.0--0.2.0.sql extension/nnpg--0.1.0.control

REGRESS = install spec create fit fit_errors parallel predict manage cnn augment transfer plot importance explain prune quantize onnx fashion sequence cache security uninstall

PG_CPPFLAGS = -I$(srcdir)/src/core -I$(srcdir)/src/pg -I$(PB_DIR)
# Warnings are errors; -O2 comes from pg_config.  Never -ffast-math or
# -march=native: the NaN/Inf checks and portability depend on it.
PG_CFLAGS = -Werror
SHLIB_LINK = -fopenmp -lopenblas -lprotobuf-c -lm

EXTRA_CLEAN = results regression.diffs regression.out build

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The core is C99 with declarations where they are used (llm.c style), which
# the server's -Wdeclaration-after-statement would reject under -Werror.
# -O3 vectorizes the element-wise loops; OpenMP splits layers over threads.
$(CORE_SRCS:.c=.o): CFLAGS += -Wno-declaration-after-statement -O3 -fno-math-errno -fopenmp
$(CORE_SRCS:.c=.bc): BITCODE_CFLAGS += -Wno-declaration-after-statement

# PGXS does not track headers: rebuild every object when one changes, so a
# grown struct never meets an object compiled against the old one.
$(OBJS): $(wildcard src/core/*.h src/pg/*.h)

$(PB_DIR)/onnx.pb-c.c $(PB_DIR)/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p $(PB_DIR)
	protoc-c --c_out=$(PB_DIR) -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)

src/core/onnx.o: $(PB_DIR)/onnx.pb-c.h
# Generated code: the server's warning set is not its authors'.
$(PB_OBJ): CFLAGS += -Wno-declaration-after-statement -Wno-missing-prototypes
