# topo-two-socket-cxl: two sockets (CPUs and DRAM on nodes 0 and 1), each with its own
# CPU-less CXL node (2 near socket 0, 3 near socket 1): each socket demotes to its own.
# vm-machine: -machine pc,hmat=on -m 768M -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=256M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2 -object memory-backend-ram,size=128M,id=m3
# vm-machine: -numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1
# vm-machine: -numa node,nodeid=2,memdev=m2,initiator=0 -numa node,nodeid=3,memdev=m3,initiator=1
# vm-machine: -numa dist,src=0,dst=1,val=21 -numa dist,src=0,dst=2,val=24 -numa dist,src=0,dst=3,val=34
# vm-machine: -numa dist,src=1,dst=2,val=34 -numa dist,src=1,dst=3,val=24 -numa dist,src=2,dst=3,val=44
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=130
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=10G
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-latency,latency=250
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=6G
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-latency,latency=350
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-bandwidth,bandwidth=4G
# vm-machine: -numa hmat-lb,initiator=1,target=0,hierarchy=memory,data-type=access-latency,latency=130
# vm-machine: -numa hmat-lb,initiator=1,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=10G
# vm-machine: -numa hmat-lb,initiator=1,target=1,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=1,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=1,target=2,hierarchy=memory,data-type=access-latency,latency=350
# vm-machine: -numa hmat-lb,initiator=1,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=4G
# vm-machine: -numa hmat-lb,initiator=1,target=3,hierarchy=memory,data-type=access-latency,latency=250
# vm-machine: -numa hmat-lb,initiator=1,target=3,hierarchy=memory,data-type=access-bandwidth,bandwidth=6G
# vm-fixture: vm-two-socket-cxl
# vm-timeout-s: 60
. /lib/tierd-topology.sh
topology_check
want_kernel_line "Demotion targets for Node 0: preferred: 2, fallback: 2-3"
want_kernel_line "Demotion targets for Node 1: preferred: 3, fallback: 2-3"
