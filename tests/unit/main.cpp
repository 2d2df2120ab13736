// The doctest runner of all unit tests. `unit_tests --test-suite=NAME` runs one module.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
