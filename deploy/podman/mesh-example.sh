#!/bin/sh
# Two services of the sample mesh, geo and rate, as Podman containers on
# DockNet, and a client container that calls both by name (the way search
# calls them), over DockNet:
#
#   deploy/podman/mesh-example.sh up      # start geo and rate
#   deploy/podman/mesh-example.sh call    # a client container calls them
#   docknet ps                            # the endpoints, OWNER = podman/<id>
#   deploy/podman/mesh-example.sh down    # remove them (and their endpoints)
#
# Before: as root on the host,
#   docknet master &              (or deploy/docknet-master.service)
#   docknet cni install           (the plugin in /opt/cni/bin)
#   podman build -f deploy/Containerfile -t registry.example.com/docknet:0.1.0 .
#
# The flags, and why:
#   --network-backend cni           DockNet is a CNI plugin; Podman 4 may
#                                   default to netavark, which runs none
#   --network-config-dir DIR        where docknet-example.conflist is (this
#                                   directory, unless DOCKNET_CNI_CONF_DIR)
#   --network docknet-example       that conflist: bridge first (the kernel
#                                   interface), docknet-cni chained after it
#   --name NAME                     the endpoint's name: what others call it by
#   -v /run/docknet:/run/docknet    the master's run directory, the directory
#                                   itself so a restarted master is found
#   -e DOCKNET_REQUIRE=1            a container that cannot attach exits with
#                                   the reason instead of running off DockNet
# Nothing else: no endpoint name or secret in the environment; the master
# knows the container by its network namespace. Run as root (rootful
# Podman): the bridge needs it, and the master's sockets are root's.
# A machine may need more (e.g. no registry: --rootfs instead of an image);
# this example keeps to the flags DockNet itself needs.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=${DOCKNET_IMAGE:-registry.example.com/docknet:0.1.0}
CONF_DIR=${DOCKNET_CNI_CONF_DIR:-$HERE}
RUN_DIR=/run/docknet
NETWORK=docknet-example
SERVICES="geo rate"

pm() {
	podman --network-backend cni --network-config-dir "$CONF_DIR" "$@"
}

on_docknet() {
	pm run --network "$NETWORK" -v "$RUN_DIR:$RUN_DIR" -e DOCKNET_REQUIRE=1 "$@"
}

wait_ready() {
	tries=0
	until pm logs "$1" 2>/dev/null | grep -q '"event": "ready"'; do
		tries=$((tries + 1))
		if [ "$tries" -gt 100 ] || [ "$(pm inspect -f '{{.State.Running}}' "$1")" != true ]; then
			echo "$1 did not start:" >&2
			pm logs "$1" >&2 || true
			exit 1
		fi
		sleep 0.2
	done
}

CLIENT='
import aiohttp, aiodocknet
from aiodocknet.aiohttp import DockNetConnector

async def main():
    async with aiohttp.ClientSession(connector=DockNetConnector()) as s:
        async with s.get("http://geo:8080/nearby", params={"lat": "37.7749", "lon": "-122.4194"}) as r:
            near = await r.json()
            print("geo", r.status, near)
        stay = {"hotel_ids": near["hotel_ids"], "inDate": "2015-04-09", "outDate": "2015-04-10"}
        async with s.post("http://rate:8080/rates", json=stay) as r:
            print("rate", r.status, await r.json())

aiodocknet.run(main(), require=True)
'

case ${1:-} in
up)
	for name in $SERVICES; do
		on_docknet -d --replace --name "$name" "$IMAGE" \
			python -m services.run "$name" --loop docknet
	done
	for name in $SERVICES; do
		wait_ready "$name"
		echo "$name ready"
	done
	;;
call)
	on_docknet --rm --name docknet-example-client "$IMAGE" python -c "$CLIENT"
	;;
down)
	# podman rm runs the plugin's DEL: the endpoints go with the containers.
	pm rm -f $SERVICES docknet-example-client >/dev/null 2>&1 || true
	;;
*)
	echo "usage: $0 up|call|down" >&2
	exit 2
	;;
esac
