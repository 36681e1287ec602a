# topo-hotplug: zonelists rebuilt after boot. CPUs and DRAM on node 0, a CPU-less node 1
# faster than DRAM (40 ns, 80 GB/s), memory-only DRAM on node 2, and node 3's DRAM in a
# pc-dimm, which the kernel adds by ACPI memory hotplug and onlines after the CPUs are up:
# that rebuilds every zonelist with node 0's CPUs counted. From node 1, nodes 0 (distance
# 20, +1 lower number, +1 CPUs), 2 and 3 (22) tie; the rebuilt node_load[] gives node 0,
# where a replay of the boot build gives 2-3. tierd reads the rebuilt lists from /dev/kmsg.
# vm-machine: -machine pc,hmat=on -m 512M,slots=2,maxmem=1G -smp 2
# vm-machine: -object memory-backend-ram,size=256M,id=m0 -object memory-backend-ram,size=128M,id=m1
# vm-machine: -object memory-backend-ram,size=128M,id=m2 -object memory-backend-ram,size=128M,id=m3
# vm-machine: -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,memdev=m1,initiator=0
# vm-machine: -numa node,nodeid=2,memdev=m2,initiator=0 -numa node,nodeid=3,initiator=0
# vm-machine: -device pc-dimm,id=dimm3,memdev=m3,node=3
# vm-machine: -numa dist,src=0,dst=1,val=20 -numa dist,src=0,dst=2,val=20 -numa dist,src=0,dst=3,val=20
# vm-machine: -numa dist,src=1,dst=2,val=22 -numa dist,src=1,dst=3,val=22 -numa dist,src=2,dst=3,val=20
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=40
# vm-machine: -numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=80G
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-latency,latency=80
# vm-machine: -numa hmat-lb,initiator=0,target=3,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
# vm-fixture: vm-hotplug
# vm-timeout-s: 60
. /lib/tierd-topology.sh
expect_ge "$(kernel_log | grep -c '^Built [0-9]* zonelists')" 2 "zonelist builds in the kernel log"
topology_check
capture_kmsg
want_kernel_line "Demotion targets for Node 1: preferred: 0, fallback: 0,2-3"
