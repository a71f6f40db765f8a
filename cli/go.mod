module council.dev/cli

go 1.26.0

require (
	council.dev/events v0.0.0
	council.dev/functions/critique v0.0.0
	council.dev/functions/execute v0.0.0
	council.dev/functions/generate v0.0.0
	council.dev/shared v0.0.0
)

replace (
	council.dev/events => ../events
	council.dev/functions/critique => ../functions/critique
	council.dev/functions/execute => ../functions/execute
	council.dev/functions/generate => ../functions/generate
	council.dev/shared => ../shared
)
