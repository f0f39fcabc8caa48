# Make targets for the real services (Kafka KRaft node and Apicurio schema registry; with REST=1
# also S3Proxy and Iceberg's REST catalog server; Python venv); included from the top-level Makefile.

# The directory of this file, so the targets work whatever the including Makefile's cwd or name.
K2_DEV_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
K2_ROOT ?= $(abspath $(K2_DEV_DIR)/..)
K2_SERVICES ?= bash $(K2_ROOT)/dev/services.sh
# `make services-up REST=1`: the production topology's services too (object store, REST catalog).
K2_REST_FLAG = $(if $(filter 1 yes true,$(REST)),--rest)

.PHONY: services-fetch services-up services-up-rest services-down services-status services-reset venv

## Download the jars and the registry from Maven Central into .k2/*/lib and .k2/registry (once per pom change).
services-fetch:
	$(K2_SERVICES) fetch $(K2_REST_FLAG)

## Fetch if needed, then start Kafka and the schema registry on 127.0.0.1 (REST=1: also S3Proxy
## and the REST catalog) and wait until they answer (no-op for what already runs).
services-up: services-fetch
	$(K2_SERVICES) up $(K2_REST_FLAG)

## Everything the tests use: Kafka, the schema registry, S3Proxy and the REST catalog.
services-up-rest:
	$(K2_SERVICES) up --rest

## Stop every service (data is kept).
services-down:
	$(K2_SERVICES) down

## Print which services run.
services-status:
	$(K2_SERVICES) status

## Stop the services and delete their data and logs.
services-reset:
	$(K2_SERVICES) reset

## Create .k2/venv with pyiceberg and friends (once per requirements change).
venv:
	$(K2_SERVICES) venv
