"""The inspector: a JSON API and server-rendered pages over the artifact store."""
