# deltaattn-eval as a user runs it (cmake -P): generated inputs, a good run, and each bad
# input. Variables: EVAL (the binary), WORK (a scratch directory), EMULATOR (optional,
# e.g. qemu for cross builds), TRACES (optional: the tiny LM's committed layer-1 traces).
cmake_minimum_required(VERSION 3.19)  # string(JSON)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(eval_run result_var)
  execute_process(COMMAND ${EMULATOR} "${EVAL}" ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${result_var}_code "${code}" PARENT_SCOPE)
  set(${result_var}_out "${out}" PARENT_SCOPE)
  set(${result_var}_err "${err}" PARENT_SCOPE)
endfunction()

eval_run(synth synth --dir "${WORK}" --positions 96 --q-heads 4 --kv-heads 2 --dim 32)
if(NOT synth_code EQUAL 0)
  message(FATAL_ERROR "synth failed (${synth_code}): ${synth_err}")
endif()
set(inputs --q "${WORK}/q.npy" --k "${WORK}/k.npy" --v "${WORK}/v.npy")

# A good run: exit 0, a summary, the JSON keys the README lists, an output of n x Hq x d.
eval_run(good run ${inputs} --prompt 64 --sinks 2 --window 8 --value-theta 0.05 --json "${WORK}/stats.json" --out "${WORK}/out.npy")
if(NOT good_code EQUAL 0)
  message(FATAL_ERROR "run failed (${good_code}): ${good_err}")
endif()
if(NOT good_out MATCHES "attention sparsity")
  message(FATAL_ERROR "no summary on stdout: ${good_out}")
endif()
file(READ "${WORK}/stats.json" json)
foreach(key attention_sparsity delta_sparsity value_sparsity total_sparsity prefill decode max_abs_error rel_error score_bound
            kcache_bytes_per_token kcache_dense_bytes_per_token arch time_dense_s time_hybrid_s per_head)
  string(JSON value ERROR_VARIABLE missing GET "${json}" ${key})
  if(missing)
    message(FATAL_ERROR "stats.json lacks ${key}: ${missing}")
  endif()
endforeach()
string(JSON heads LENGTH "${json}" per_head)
string(JSON decode_queries GET "${json}" decode queries)
if(NOT heads EQUAL 4 OR NOT decode_queries EQUAL 128)  # 4 query heads; 32 decode steps x 4 heads
  message(FATAL_ERROR "per_head has ${heads} entries, decode ${decode_queries} queries")
endif()
file(SIZE "${WORK}/out.npy" out_size)
if(NOT out_size EQUAL 49280)  # 128-byte header + 96 x 4 x 32 floats
  message(FATAL_ERROR "out.npy has ${out_size} bytes")
endif()

# The tiny LM's own activations (tests/data, dumped by tools/dump_traces.py): 160
# positions, 4 query / 2 KV heads, d 64; prefill 100 and decode 60.
if(TRACES)
  eval_run(tiny run --q "${TRACES}/tinylm_layer1_q.npy" --k "${TRACES}/tinylm_layer1_k.npy" --v "${TRACES}/tinylm_layer1_v.npy"
           --prompt 100 --sinks 4 --window 32 --json "${WORK}/tiny.json" --out "${WORK}/tiny.npy")
  if(NOT tiny_code EQUAL 0)
    message(FATAL_ERROR "run on the tiny LM's traces failed (${tiny_code}): ${tiny_err}")
  endif()
  file(READ "${WORK}/tiny.json" json)
  string(JSON prefill_queries GET "${json}" prefill queries)
  string(JSON decode_queries GET "${json}" decode queries)
  file(SIZE "${WORK}/tiny.npy" out_size)
  if(NOT prefill_queries EQUAL 400 OR NOT decode_queries EQUAL 240 OR NOT out_size EQUAL 163968)  # 128 + 160 x 4 x 64 x 4
    message(FATAL_ERROR "tiny LM traces: ${prefill_queries} prefill / ${decode_queries} decode queries, out.npy ${out_size} bytes")
  endif()
  message(STATUS "tiny LM traces: ${tiny_out}")
endif()

# Bad input: a non-zero exit, a message naming the argument, no output file.
function(expect_rejected name needle)
  file(REMOVE "${WORK}/bad.npy" "${WORK}/bad.json")
  eval_run(bad ${ARGN} --out "${WORK}/bad.npy" --json "${WORK}/bad.json")
  if(bad_code EQUAL 0)
    message(FATAL_ERROR "${name}: accepted")
  endif()
  if(NOT bad_err MATCHES "${needle}")
    message(FATAL_ERROR "${name}: the message does not name ${needle}: ${bad_err}")
  endif()
  if(EXISTS "${WORK}/bad.npy" OR EXISTS "${WORK}/bad.json")
    message(FATAL_ERROR "${name}: an output file was written")
  endif()
  message(STATUS "rejected as expected (${name}): ${bad_err}")
endfunction()
file(WRITE "${WORK}/garbage.npy" "not an npy file")
expect_rejected("missing file" "--k" run --q "${WORK}/q.npy" --k "${WORK}/none.npy" --v "${WORK}/v.npy")
expect_rejected("not npy" "--q" run --q "${WORK}/garbage.npy" --k "${WORK}/k.npy" --v "${WORK}/v.npy")
expect_rejected("v shape" "--v" run --q "${WORK}/q.npy" --k "${WORK}/k.npy" --v "${WORK}/q.npy")
expect_rejected("window 0" "window" run ${inputs} --window 0)
expect_rejected("negative window" "--window" run ${inputs} --window -3)
expect_rejected("negative theta" "theta" run ${inputs} --policy fixed --theta -1)
expect_rejected("bad policy" "policy" run ${inputs} --policy nonsense)
expect_rejected("unknown flag" "--bogus" run ${inputs} --bogus 3)
message(STATUS "deltaattn-eval CLI: all checks passed")
