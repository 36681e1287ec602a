# topo-four-tiers: four tiers from HMAT. CPUs and DRAM on node 0 (80 ns, 20 GB/s), CPU-less
# nodes 1-3 ever slower (150/10, 300/5, 600/2): memory_tier 4, 16, 67 and 337, each node
# demoting to the next.
# vm-machine: -machine pc,hmat=on -m 640M -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=128M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2 -object memory-backend-ram,size=128M,id=m3
# vm-machine: -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,memdev=m1,initiator=0
# vm-machine: -numa node,nodeid=2,memdev=m2,initiator=0 -numa node,nodeid=3,memdev=m3,initiator=0
# vm-machine: -numa dist,src=0,dst=1,val=20 -numa dist,src=0,dst=2,val=30 -numa dist,src=0,dst=3,val=40
# vm-machine: -numa dist,src=1,dst=2,val=20 -numa dist,src=1,dst=3,val=30 -numa dist,src=2,dst=3,val=20
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=150
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=10G
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-latency,latency=300
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=5G
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-latency,latency=600
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-bandwidth,bandwidth=2G
# vm-fixture: vm-four-tiers
# vm-timeout-s: 60
. /lib/tierd-topology.sh
topology_check
want_kernel_line "Demotion targets for Node 0: preferred: 1, fallback: 1-3"
want_kernel_line "Demotion targets for Node 2: preferred: 3, fallback: 3"
