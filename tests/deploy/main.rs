//! The cluster of docker-compose.yml, as far as it runs without a container
//! engine: its files agree with one another and with pushwire's flags
//! (`files`), and deploy/nginx.conf, the very file Compose mounts, carries all
//! four transports between two instances configured as Compose configures
//! them, on one Redis (`cluster`).

use pushwire_testkit as common;

mod chaos;
mod cluster;
mod deployment;
mod files;
