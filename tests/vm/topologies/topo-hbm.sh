# topo-hbm: a node faster than DRAM (example 3 of the comment in mm/memory-tiers.c). CPUs
# and DRAM on node 0 (80 ns, 20 GB/s), CPU-less HBM on node 1 (40 ns, 80 GB/s), CPU-less slow
# memory on node 2 (300 ns, 5 GB/s): tiers 1 | 0 | 2, the HBM node demoting to DRAM.
# vm-machine: -machine pc,hmat=on -m 512M -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=128M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2
# vm-machine: -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,memdev=m1,initiator=0
# vm-machine: -numa node,nodeid=2,memdev=m2,initiator=0
# vm-machine: -numa dist,src=0,dst=1,val=20 -numa dist,src=0,dst=2,val=30 -numa dist,src=1,dst=2,val=40
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=40
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=80G
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-latency,latency=300
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=5G
# vm-fixture: vm-hbm
# vm-timeout-s: 60
. /lib/tierd-topology.sh
topology_check
want_kernel_line "Demotion targets for Node 1: preferred: 0, fallback: 0,2"
want_kernel_line "Demotion targets for Node 0: preferred: 2, fallback: 2"
