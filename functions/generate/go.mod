module council.dev/functions/generate

go 1.26.0
