module council.dev/knative

go 1.26
