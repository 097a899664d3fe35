// Package config reads cardwire's environment variables through an injected
// getenv, so that commands can be run from tests with a fake environment.
// Every parse error names the variable to fix. Secrets are typed so that they
// cannot be printed or logged by accident.
package config
