# GNU Makefile over meson. `make help` lists the targets.
BUILD      ?= build
FUZZ_BUILD ?= build-fuzz
PREFIX     ?= /usr/local
FUZZ_SECONDS ?= 60
MESON_TEST = meson test -C $(BUILD) --print-errorlogs --num-processes 2

CLANG_BUILD ?= build-clang

.PHONY: all run test_units test_memory test_system test_style test_clang tests report install fuzz bench api clean help

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX)

# The daemons on their built-in defaults: smtpd on port 2525 of 127.0.0.1 and ::1,
# Maildirs, queue and logs under ./var/, smtpc delivering the queue. Ctrl-C stops them.
run: all
	scripts/run-daemons $(BUILD)

test_units: all
	$(MESON_TEST) --suite unit

# The unit tests under valgrind memcheck, then the daemons under valgrind
# (--trace-children) in real sessions: any leak or error fails.
test_memory: all
	$(MESON_TEST) --suite unit --timeout-multiplier 10 \
	  --wrapper 'valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible'
	$(MESON_TEST) --suite memory

test_system: all
	$(MESON_TEST) --suite system

test_style: all
	$(MESON_TEST) --suite style

# The whole tree again with clang, warnings as errors (g++ builds $(BUILD)).
test_clang:
	[ -f $(CLANG_BUILD)/build.ninja ] || CXX=clang++ meson setup $(CLANG_BUILD) >/dev/null
	ninja -C $(CLANG_BUILD)

tests: test_style test_clang test_units test_memory test_system

# The PDF report doc/report.pdf (scripts/make-report: installs its tools through
# scripts/bootstrap-report, measures tests, coverage and fuzzing, plots doc/report/data).
report:
	scripts/make-report $(BUILD)

install: all
	meson configure $(BUILD) -Dprefix=$(PREFIX)
	meson install -C $(BUILD)

# libFuzzer targets, built with clang and sanitizers; each runs FUZZ_SECONDS.
fuzz:
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: all
	$(BUILD)/bench/bench_core
	$(BUILD)/bench/bench_session

# The API reference of include/smtp/ (doxygen, doc/Doxyfile.in; any warning fails).
api: $(BUILD)/build.ninja
	meson compile -C $(BUILD) api
	@echo "API reference: $(BUILD)/doc/api/html/index.html"

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(CLANG_BUILD)

help:
	@echo "make              build everything into $(BUILD)/"
	@echo "make run          start smtpd and smtpc on their defaults (port 2525, ./var/)"
	@echo "make test_units   unit tests (doctest)"
	@echo "make test_memory  unit tests under valgrind memcheck"
	@echo "make test_system  system tests (installed library; daemons later)"
	@echo "make test_style   clang-format and sans-IO checks"
	@echo "make test_clang   build everything with clang too, warnings as errors"
	@echo "make tests        all of the above"
	@echo "make fuzz         each libFuzzer target for FUZZ_SECONDS (default 60)"
	@echo "make bench        the core benchmarks"
	@echo "make report       the PDF report doc/report.pdf (scripts/make-report)"
	@echo "make api          the API reference (doxygen) into $(BUILD)/doc/api/html/"
	@echo "make install      install into PREFIX (default /usr/local)"
