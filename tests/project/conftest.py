"""The project layer: the README, the docs site, the scripts and the deployment files, checked
as a newcomer would use them. Its fixtures, when it needs some, go here."""
