# topo-tie: ties in the next tier, four nodes. CPUs and DRAM on node 0, memory-only DRAM on
# node 2, slow CPU-less nodes 1 and 3 (HMAT 250 ns, 6 GB/s). From node 2, node 1 (distance
# 20, +1 in find_next_best_node for a lower number) and node 3 (21) tie at 21: node_load[]
# from the boot-time zonelist build decides (2 and 2 here, so node 1 on its number). A
# build with CPU penalties, which tierd used to mirror, leaves node 1 at 3 and picks node 3.
# (The kernel numbers nodes with CPUs first, so the CPU node is node 0.)
# vm-machine: -machine pc,hmat=on -m 640M -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=128M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2 -object memory-backend-ram,size=128M,id=m3
# vm-machine: -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,memdev=m1,initiator=0
# vm-machine: -numa node,nodeid=2,memdev=m2,initiator=0 -numa node,nodeid=3,memdev=m3,initiator=0
# vm-machine: -numa dist,src=0,dst=1,val=20 -numa dist,src=0,dst=2,val=20 -numa dist,src=0,dst=3,val=20
# vm-machine: -numa dist,src=1,dst=2,val=20 -numa dist,src=1,dst=3,val=21 -numa dist,src=2,dst=3,val=21
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=250
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=6G
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-latency,latency=250
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-bandwidth,bandwidth=6G
# vm-fixture: vm-tie
# vm-timeout-s: 60
. /lib/tierd-topology.sh
topology_check
want_kernel_line "Demotion targets for Node 2: preferred: 1, fallback: 1,3"
want_kernel_line "Demotion targets for Node 0: preferred: 1,3, fallback: 1,3"
