//! Bindings to the system DPDK. (Being written: see issue 2.)
