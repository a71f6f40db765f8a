module council.dev/test

go 1.26.0
