# sluice-trace: reader and schedules of the public request traces. Used by
# sluice-bench (loadgen) and the simulator; depends on common/ only.
add_library(sluice-trace STATIC ${CMAKE_CURRENT_LIST_DIR}/sl_trace.c)
sl_layer(sluice-trace PUBLIC FILES bench/sl_trace.h)
target_link_libraries(sluice-trace PUBLIC sluice-common m)
