# Runs an MPI job that is meant to fail and checks that it does so properly: a non-zero exit status
# within LIMIT seconds (default 60), and output matching EXPECT_REGEX when given.
#   cmake -DMPIEXEC=... -DNP=3 -DPROGRAM=... [-DARGS=...] [-DEXPECT_REGEX=...]
#         -P expect_job_failure.cmake
if(NOT LIMIT)
  set(LIMIT 60)
endif()
string(TIMESTAMP start "%s")
execute_process(
  COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np ${NP} ${PROGRAM} ${ARGS}
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${LIMIT})
string(TIMESTAMP end "%s")
math(EXPR seconds "${end} - ${start}")
message("${out}${err}")
message("job status: ${status} after ${seconds} s")
if(NOT status MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the job did not end by itself within ${LIMIT} s (${status}): it hung")
endif()
if(status EQUAL 0)
  message(FATAL_ERROR "the job exited 0 although a rank failed")
endif()
if(EXPECT_REGEX AND NOT "${out}${err}" MATCHES "${EXPECT_REGEX}")
  message(FATAL_ERROR "the job's output does not match '${EXPECT_REGEX}'")
endif()
