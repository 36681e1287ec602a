# topo-no-hmat: the test bed's three nodes (CPUs on node 0, distances 20/30/20) without HMAT
# (`-machine pc`): 6.12 gives every node the default DRAM distance, one tier, no demotion.
# vm-machine: -machine pc -m 512M -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=128M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2
# vm-machine: -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,memdev=m1
# vm-machine: -numa node,nodeid=2,memdev=m2
# vm-machine: -numa dist,src=0,dst=1,val=20 -numa dist,src=0,dst=2,val=30 -numa dist,src=1,dst=2,val=20
# vm-fixture: vm-no-hmat
# vm-timeout-s: 60
. /lib/tierd-topology.sh
topology_check
want_kernel_line "Demotion targets for Node 0: null"
