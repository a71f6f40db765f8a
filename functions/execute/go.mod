module council.dev/functions/execute

go 1.26.0

require (
	council.dev/events v0.0.0
	council.dev/shared v0.0.0
)

replace (
	council.dev/events => ../../events
	council.dev/shared => ../../shared
)
