# topo-tie3: a three-way tie that node_load[] decides against the node numbers. CPUs and
# DRAM on node 0, memory-only DRAM on nodes 1 and 3, a CPU-less node 2 faster than DRAM
# (40 ns, 80 GB/s): tiers 2 | 0,1,3. From node 2, nodes 0 (distance 20, +1 lower number,
# +1 CPUs), 1 (21, +1) and 3 (22) all tie at 22; the boot-time loads 3, 2 and 2 make it
# node 1: not the lowest number (0), and not node 3, which a build with CPU penalties gives.
# vm-machine: -machine pc,hmat=on -m 640M -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=128M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2 -object memory-backend-ram,size=128M,id=m3
# vm-machine: -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,memdev=m1,initiator=0
# vm-machine: -numa node,nodeid=2,memdev=m2,initiator=0 -numa node,nodeid=3,memdev=m3,initiator=0
# vm-machine: -numa dist,src=0,dst=1,val=20 -numa dist,src=0,dst=2,val=20 -numa dist,src=0,dst=3,val=21
# vm-machine: -numa dist,src=1,dst=2,val=21 -numa dist,src=1,dst=3,val=21 -numa dist,src=2,dst=3,val=22
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-latency,latency=40
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=80G
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-fixture: vm-tie3
# vm-timeout-s: 60
. /lib/tierd-topology.sh
topology_check
want_kernel_line "Demotion targets for Node 2: preferred: 1, fallback: 0-1,3"
