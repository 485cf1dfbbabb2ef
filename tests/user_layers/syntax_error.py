class Oops:
    def forward(self, x, params)
        return x
