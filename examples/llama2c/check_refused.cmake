# heed-eval must refuse a bad command line: exit status 2 and a message naming the problem.
# -DEVAL=<heed-eval> -DARGS=<;-separated arguments> -DEXPECT=<regex the message must match>
execute_process(COMMAND ${EVAL} ${ARGS} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "heed-eval ${ARGS}: exit status ${rc}, expected 2 (refused)\n${out}${err}")
endif()
if(NOT err MATCHES "${EXPECT}")
  message(FATAL_ERROR "heed-eval ${ARGS}: message does not match '${EXPECT}':\n${err}")
endif()
message(STATUS "refused: ${ARGS}")
