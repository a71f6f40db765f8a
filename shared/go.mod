module council.dev/shared

go 1.26
