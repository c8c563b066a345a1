# sluice-history: the history checker of sluice-bench chaos (what clients saw
# of their jobs, and the promises it must keep). Pure; depends on common/ only.
add_library(sluice-history STATIC ${CMAKE_CURRENT_LIST_DIR}/sl_history.c)
sl_layer(sluice-history PUBLIC FILES bench/sl_history.h)
target_link_libraries(sluice-history PUBLIC sluice-common)
