module council.dev/events

go 1.26.0
