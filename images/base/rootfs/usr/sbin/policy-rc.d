#!/bin/sh
# Packages installed during an image build must not try to start services.
exit 101
