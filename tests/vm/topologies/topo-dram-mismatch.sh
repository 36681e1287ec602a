# topo-dram-mismatch: two CPU nodes whose HMAT differs by more than 10% (node 1's DRAM at
# 100 ns against node 0's 80 ns) and a CPU-less slow node 2. The kernel refuses node 1 as
# DRAM (mt_set_default_dram_perf), does not use HMAT at all, and puts every node in one tier:
# no node demotes.
# vm-machine: -machine pc,hmat=on -m 640M -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=256M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2
# vm-machine: -numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1
# vm-machine: -numa node,nodeid=2,memdev=m2,initiator=0
# vm-machine: -numa dist,src=0,dst=1,val=21 -numa dist,src=0,dst=2,val=24 -numa dist,src=1,dst=2,val=24
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=140
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=10G
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-latency,latency=250
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=6G
# vm-machine: -numa hmat-lb,initiator=1,target=0,hierarchy=memory,data-type=access-latency,latency=140
# vm-machine: -numa hmat-lb,initiator=1,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=10G
# vm-machine: -numa hmat-lb,initiator=1,target=1,hierarchy=memory,data-type=access-latency,latency=100
# vm-machine: -numa hmat-lb,initiator=1,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=1,target=2,hierarchy=memory,data-type=access-latency,latency=250
# vm-machine: -numa hmat-lb,initiator=1,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=6G
# vm-fixture: vm-dram-mismatch
# vm-timeout-s: 60
. /lib/tierd-topology.sh
topology_check
want_kernel_line "Demotion targets for Node 2: null"
