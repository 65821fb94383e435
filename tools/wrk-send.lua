-- wrk script: POST the GoCM form body with one token to /gcm/send.
wrk.method = "POST"
wrk.body = 'tokens=token1&payload={"title": "hello"}'
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
