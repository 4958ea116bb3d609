# authctl tasks. `make help` lists them.
#
# Docker: Debian's /usr/bin/docker (BuildKit) when present. Compose: docker-compose
# (v1 >= 1.29) when present, else `docker compose` (v2).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO   ?= cargo
DOCKER  ?= $(shell [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)
COMPOSE ?= $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)
IMAGE   ?= authctl:latest
export DOCKER

.PHONY: help dev build image image-from-source postgres-image up down logs ps \
        test test-container compose-smoke bench clean \
        up-replicas down-replicas replicas-smoke

help: ## list the tasks
	@grep -E '^[a-z.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-18s %s\n", $$1, $$2 }'

dev: ## run the API locally (cargo run -- serve; SQLite ./authctl.db; reads .env)
	$(CARGO) run -- serve

build: image ## build the image authctl:latest (same as `make image`)

image: ## build authctl:latest offline: host release binary -> Dockerfile runtime stage
	IMAGE=$(IMAGE) docker/build-image.sh

image-from-source: ## build authctl:latest inside Docker (needs a registry for the Rust image)
	DOCKER_BUILDKIT=1 $(DOCKER) build -t $(IMAGE) .

postgres-image: ## build authctl-postgres:15 from Debian packages (offline PostgreSQL)
	docker/postgres-image.sh

.env: ## create .env from .env.example with a random POSTGRES_PASSWORD
	@test ! -e .env || { echo ".env exists; not overwriting" >&2; exit 1; }
	sed "s/^POSTGRES_PASSWORD=$$/POSTGRES_PASSWORD=$$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')/" .env.example > .env
	chmod 600 .env
	@echo "wrote .env (random POSTGRES_PASSWORD; SECRET_KEY empty: generated on first start)"

# POSTGRES_IMAGE from the environment or .env; an authctl-postgres:* image is built here.
up: image ## start authctl + PostgreSQL (compose.yaml) on 127.0.0.1:8080
	@[ -e .env ] || $(MAKE) --no-print-directory .env
	@pg="$${POSTGRES_IMAGE:-$$(sed -n 's/^POSTGRES_IMAGE=//p' .env | tail -n1)}"; \
	if [[ "$$pg" == authctl-postgres:* ]]; then IMAGE="$$pg" docker/postgres-image.sh; fi
	$(COMPOSE) up -d --no-build
	@echo "API: http://$${AUTHCTL_PUBLISH:-127.0.0.1}:$${AUTHCTL_PORT:-8080}  (docs: /docs)"

down: ## stop the stack (keeps the database volume; `docker-compose down -v` drops it)
	$(COMPOSE) down

logs: ## follow the stack's logs
	$(COMPOSE) logs -f

ps: ## show the stack's containers and their health
	$(COMPOSE) ps

# Three replicas + PostgreSQL + HAProxy (compose.replicas.yaml). The balancer's image
# (authctl-haproxy:2.6) builds through compose from docker/haproxy; --build picks up an
# edited haproxy.cfg and is a cached no-op otherwise.
REPLICAS := $(COMPOSE) -f compose.replicas.yaml

up-replicas: image ## start 3 replicas + PostgreSQL behind HAProxy on 127.0.0.1:8080
	@[ -e .env ] || $(MAKE) --no-print-directory .env
	@pg="$${POSTGRES_IMAGE:-$$(sed -n 's/^POSTGRES_IMAGE=//p' .env | tail -n1)}"; \
	if [[ "$$pg" == authctl-postgres:* ]]; then IMAGE="$$pg" docker/postgres-image.sh; fi
	$(REPLICAS) up -d --build
	@echo "API through the balancer: http://$${AUTHCTL_PUBLISH:-127.0.0.1}:$${AUTHCTL_PORT:-8080}"

down-replicas: ## stop the replicas stack (keeps the database volume; add -v by hand to drop it)
	$(REPLICAS) down

replicas-smoke: image ## replicas stack: shared tokens, SIGKILL one replica under load, down -v
	docker/postgres-image.sh
	POSTGRES_IMAGE=authctl-postgres:15 ci/replicas-smoke.sh

test: ## cargo test --workspace (everything; the container tests need Docker and authctl:latest)
	$(CARGO) test --workspace

test-container: image ## the Testcontainers tests against the freshly built image
	$(CARGO) test --test container

compose-smoke: image ## bring the stack up with authctl-postgres:15, register + log in, down -v
	docker/postgres-image.sh
	POSTGRES_IMAGE=authctl-postgres:15 ci/compose-smoke.sh

bench: ## the benchmark (README, Performance): both backends, release build; BENCH_ARGS="--smoke" etc.
	$(CARGO) run --release -p authctl-bench -- $(BENCH_ARGS)

clean: ## remove build output and the local SQLite database (not images or volumes)
	$(CARGO) clean
	rm -f authctl.db authctl.db-shm authctl.db-wal
