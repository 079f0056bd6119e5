"""Identifiers the program writes and the policy pack, the offline plan and the tests read back: the project
name (the stack config namespace, ``fly-potato:<key>``, and the pack's name) and the keys of the Docker labels
on the platform's containers, networks and volumes. Change one here and every side follows.

Constants only, no imports: the policy pack imports this package from its own virtualenv (``policy/.venv``:
pulumi and pulumi-policy, none of the program's provider SDKs), and ``components/`` imports it too.
"""

PROJECT = "fly-potato"

# Docker labels (org.flypotato.*).
STACK_LABEL = "org.flypotato.stack"  # containers, networks and volumes of a stack
PROJECT_LABEL = "org.flypotato.project"
SERVICE_LABEL = "org.flypotato.service"  # a service container: its catalog name
GROUP_LABEL = "org.flypotato.group"
ZONES_LABEL = "org.flypotato.zones"  # a service container: its zones, comma-separated
ZONE_LABEL = "org.flypotato.zone"  # a zone's network
# A never-started container that delivers a service's files into its read-only config volume: the service.
FILES_FOR_LABEL = "org.flypotato.files-for"
