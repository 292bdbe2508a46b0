# Runs tests/sanitize/leak_canary.cpp under mpiexec and checks that every rank's LeakSanitizer report
# holds its one deliberate leak and nothing more (see leak_canary.cpp for why).
#   cmake -DMPIEXEC=... -DNP=2 -DPROGRAM=... -P expect_leak_report.cmake
# A rank whose leak check fails exits non-zero and mpiexec then kills the others before they report;
# with exitcode=0 every rank reports and the job ends normally. The output is what is checked.
set(ENV{LSAN_OPTIONS} "$ENV{LSAN_OPTIONS}:exitcode=0")
execute_process(
  COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np ${NP} ${PROGRAM}
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
set(all "${out}${err}")
message("${all}")
message("job status: ${status}")
if(NOT status EQUAL 0)
  message(FATAL_ERROR "the job failed (${status})")
endif()
string(REGEX MATCHALL "SUMMARY: [A-Za-z]+Sanitizer[^\n]*" summaries "${all}")
string(REGEX MATCHALL "SUMMARY: AddressSanitizer: 40 byte\\(s\\) leaked in 1 allocation\\(s\\)"
       expected "${all}")
list(LENGTH summaries n_summaries)
list(LENGTH expected n_expected)
if(NOT n_expected EQUAL NP OR NOT n_summaries EQUAL NP)
  message(FATAL_ERROR "expected ${NP} reports of exactly the 40-byte leak, one per rank; got "
                      "${n_expected} of ${n_summaries} sanitizer summaries: ${summaries}. None: "
                      "ASAN_OPTIONS/LSAN_OPTIONS do not reach the ranks. More: a leak outside dtrain "
                      "(Open MPI, PMIx, ...) needs an entry in tests/sanitize/lsan.supp")
endif()
if(NOT all MATCHES "leak_one_block[^\n]*leak_canary\\.cpp")
  message(FATAL_ERROR "the leak report does not name leak_canary.cpp's leak_one_block")
endif()
