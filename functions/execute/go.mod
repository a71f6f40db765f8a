module council.dev/functions/execute

go 1.26.0
