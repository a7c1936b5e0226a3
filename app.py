from discountflow import create_app

app = create_app()
