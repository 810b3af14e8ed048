"""A hotel-reservation microservice mesh on aiohttp (after DeathStarBench).

Each service is a module with ``make_app(up: Upstreams) -> web.Application``;
``python -m services.run NAME`` runs one of them as its own process and
``services.workload`` drives and checks the frontend.
"""
