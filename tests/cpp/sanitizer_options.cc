// Linked into every test executable of a FUSEGEN_SANITIZE build (see CMakeLists.txt here).
//
// Sanitizers exit with status 1 by default, which pytest-cpp takes for an ordinary GoogleTest
// failure: it then reads the XML report that the killed process never wrote and shows a
// FileNotFoundError instead of the sanitizer's report. Any other status makes pytest-cpp print
// the executable's whole output, report included. 86 is arbitrary but recognisable.
extern "C" const char* __asan_default_options() { return "exitcode=86"; }
extern "C" const char* __ubsan_default_options() { return "exitcode=86:print_stacktrace=1"; }
