# sluice-bench xport and qos start their peers with the transport's peer
# harness (transport/testing/sl_xport_harness.h). The bench program is
# defined after the fragments are read, so the link is deferred to the end
# of this directory.
if(TARGET sluice-xport-harness)
  cmake_language(DEFER CALL target_link_libraries sluice-bench PRIVATE sluice-xport-harness)
endif()
