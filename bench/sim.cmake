# sluice-sim: the policy lab's simulator. It links the scheduler's decision
# core (sluice-sched) and the executor engine with the sim backend
# (sluice-engine): the same code the daemons run.
add_library(sluice-simlib STATIC ${CMAKE_CURRENT_LIST_DIR}/sim/sl_sim.c
                             ${CMAKE_CURRENT_LIST_DIR}/sim/sl_sim_link.c
                             ${CMAKE_CURRENT_LIST_DIR}/sim/sl_sim_plot.c
                             ${CMAKE_CURRENT_LIST_DIR}/sim/sl_sim_out.c)
sl_layer(sluice-simlib PUBLIC DIRS bench/sim)
target_link_libraries(sluice-simlib PUBLIC sluice-sched sluice-engine sluice-trace sluice-common m)
add_executable(sluice-sim ${CMAKE_CURRENT_LIST_DIR}/sim/sim_main.c
                          ${CMAKE_CURRENT_LIST_DIR}/sim/sim_matrix.c)
target_link_libraries(sluice-sim PRIVATE sluice-simlib sluice-benchproc)
target_compile_definitions(sluice-sim PRIVATE SLUICE_TRACE_DIR="${SLUICE_TRACE_DIR}")
install(TARGETS sluice-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
