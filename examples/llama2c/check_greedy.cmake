# Greedy generation of 256 tokens from BOS must reproduce the published sample exactly.
execute_process(
  COMMAND ${EVAL} generate --model ${DATA}/stories260K.bin --tokenizer ${DATA}/tok512.bin
          --steps 256 --temperature 0
  OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "heed-eval failed (${rc})")
endif()
file(READ ${DATA}/greedy256_expected.txt expected)
string(STRIP "${out}" out)
string(STRIP "${expected}" expected)
if(NOT out STREQUAL expected)
  message(FATAL_ERROR "greedy output differs from the published sample:\n--- got\n${out}\n--- expected\n${expected}")
endif()
message(STATUS "greedy256 matches the published sample")
