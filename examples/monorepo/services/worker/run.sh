#!/bin/sh
echo "worker says hello from $(uname -m)"
