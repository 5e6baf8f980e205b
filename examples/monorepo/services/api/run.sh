#!/bin/sh
echo "api says hello from $(uname -m)"
