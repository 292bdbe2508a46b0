# Run-time options of the DTRAIN_SANITIZE=ON build (`make test-sanitize`). tests/CMakeLists.txt makes
# CTest include this file before it lists or runs any test, so the environment it sets reaches every
# process a test starts: the GoogleTest list step, the test programs, mpiexec and the ranks it forks,
# and the dtrain program that test_cli runs (which re-executes itself through /proc/self/exe with the
# environment intact). Options already in the caller's environment come last and so win.
set(_dtrain_sanitize_dir "${CMAKE_CURRENT_LIST_DIR}")

# detect_leaks: LeakSanitizer on (our code; tests/sanitize/lsan.supp names the third-party libraries
#   it ignores). fast_unwind_on_malloc=0: allocation stacks unwound with the DWARF unwinder, because
#   Open MPI, PMIx, hwloc and libstdc++ are built without frame pointers (the fast unwinder stops at
#   their first frame, so a suppression could not see the library that owns a leak, nor a report the
#   code of ours that called them). check_initialization_order, strict_init_order: static
#   initialisation order bugs between our translation units. detect_stack_use_after_return: catches a
#   view or a callback that outlives the stack frame it points into.
set(ENV{ASAN_OPTIONS} "detect_leaks=1:fast_unwind_on_malloc=0:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:$ENV{ASAN_OPTIONS}")
# use_tls=0: thread-local storage is not a root of the leak search. With it on, LeakSanitizer (GCC 12)
#   walks every thread's dynamic TLS blocks at exit, including those of Open MPI plugins that
#   MPI_Finalize has dlclose'd, and its tracer crashes there ("Tracer caught signal 11" while processing
#   the main thread; seen in a 3-rank run with dropout). Off, nothing is missed: a block that only TLS
#   still points to is reported, so the libraries that keep such blocks are suppressed by name.
set(ENV{LSAN_OPTIONS} "suppressions=${_dtrain_sanitize_dir}/lsan.supp:print_suppressions=0:use_tls=0:$ENV{LSAN_OPTIONS}")
# Any UB already ends the process (built with -fno-sanitize-recover=undefined); print where it happened.
set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1:$ENV{UBSAN_OPTIONS}")
