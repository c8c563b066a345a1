# sluice-history: the history checker of sluice-bench chaos (what clients saw
# of their jobs, and the promises it must keep). Pure; depends on common/ only.
add_library(sluice-history STATIC ${CMAKE_CURRENT_LIST_DIR}/sl_history.c)
sl_layer(sluice-history PUBLIC FILES bench/sl_history.h)
target_link_libraries(sluice-history PUBLIC sluice-common)

# sluice-benchproc: child processes and free ports for the benches that run
# the real daemons (chaos, abuse, ctlplane).
add_library(sluice-benchproc STATIC ${CMAKE_CURRENT_LIST_DIR}/sl_bench_proc.c)
sl_layer(sluice-benchproc PUBLIC FILES bench/sl_bench_proc.h)
target_link_libraries(sluice-benchproc PUBLIC sluice-common)
