module council.dev/functions/critique

go 1.26.0
